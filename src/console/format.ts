// Text for the console's pages: JSON laid out for reading, sizes, ages.
import { formatBytes } from "../cli/format.ts";

/**
 * JSON text re-indented, token for token: numbers and strings stay exactly as stored (parsing and
 * re-serialising would round large numbers and rewrite escapes in a signed payload).
 */
export function indentJson(text: string, indent = "  "): string {
  let out = "";
  let depth = 0;
  let inString = false;
  const newline = () => "\n" + indent.repeat(depth);
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      out += c;
      if (c === "\\") out += text[++i] ?? "";
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
      out += c;
    } else if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      // An empty object or array stays on its line.
      let j = i + 1;
      while (/\s/.test(text[j] ?? "")) j++;
      if (text[j] === close) {
        out += c + close;
        i = j;
      } else {
        depth++;
        out += c + newline();
      }
    } else if (c === "}" || c === "]") {
      depth--;
      out += newline() + c;
    } else if (c === ",") {
      out += c + newline();
    } else if (c === ":") {
      out += ": ";
    } else if (!/\s/.test(c)) {
      out += c;
    }
  }
  return out;
}

/** A size as the pages show it: a decimal only below 10 of a unit (8.5 KiB, 120 KiB). */
export const bytes = (n: number) => formatBytes(n, (scaled) => (scaled < 10 ? 1 : 0));

/** A duration in seconds as an operator reads it: 45 s, 12 min, 3 h 5 min, 2 d 4 h. */
export function duration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}
