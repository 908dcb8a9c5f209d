// Elysia drops unknown query parameters instead of refusing them, and a repeated one becomes an
// array or its last value: a typo must not silently widen a query, nor a repeat pick a value.
import { HttpError } from "./errors.ts";

/** The request's query parameters, each once; an unknown or repeated one is a 400 naming it. */
export function queryParameters(request: Request, known: readonly string[]): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [key, value] of new URL(request.url).searchParams) {
    if (!known.includes(key)) throw new HttpError(400, "invalid_parameter", `unknown parameter: ${key}`);
    if (Object.hasOwn(values, key)) throw new HttpError(400, "invalid_parameter", `repeated parameter: ${key}`);
    values[key] = value;
  }
  return values;
}
