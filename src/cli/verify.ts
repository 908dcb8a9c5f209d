// `icr-receiver verify`: would the receiver accept this saved delivery? Offline, against the
// configured secrets, with the same functions the webhook route uses.
import { readFileSync } from "node:fs";
import { decodeSignedData, envelopeMismatch, parseEnvelope, type UnparsedReason } from "../verify/delivery.ts";
import { SIGNATURE_HEADER, verifyWithFallback, type LabelledSecret } from "../verify/signature.ts";
import { command, EXIT, HELP_OPTION, loadSecrets, parse, SECRET_HELP, SECRET_OPTIONS, UsageError } from "./common.ts";

const OPTIONS = {
  ...HELP_OPTION,
  ...SECRET_OPTIONS,
  body: { type: "string" },
  signature: { type: "string" },
  json: { type: "boolean" },
} as const;

const HELP = `Usage: icr-receiver verify --body FILE --signature VALUE [options]

Checks a saved delivery offline, as the receiver would: the signature over the body's signedData
against every configured secret, then the signed payload. Prints which secret label matched and
the decoded (signed) event, or why it would be stored unparsed. A signature is not a secret; the secrets come only from files or the
environment and are never printed.

Options:
  --body FILE              the raw request body, byte for byte (- reads stdin)
  --signature VALUE        the ${SIGNATURE_HEADER} header value, sha256=<64 hex digits>
                           (the whole header line is accepted too)
  --json                   print the result as one JSON object

${SECRET_HELP}`;

type Verdict =
  | {
      valid: true;
      label: string;
      /** Null when the signed data is not a readable event: the receiver stores it unparsed. */
      event: string | null;
      unparsedReason: UnparsedReason | null;
      envelopeMismatch: boolean;
      /** The signed payload: its JSON value, its text where it is not JSON, null where not text. */
      payload: unknown;
    }
  | { valid: false; reason: string };

/** The receiver's verdict on a body and signature. Pure. */
export function verdict(body: Uint8Array, signature: string, secrets: readonly LabelledSecret[]): Verdict {
  const envelope = parseEnvelope(body);
  if (!envelope.ok) return { valid: false, reason: envelope.message };
  const label = verifyWithFallback(secrets, envelope.envelope.signedData, signature);
  if (label === null) {
    const shape = /^sha256=[0-9a-fA-F]{64}$/.test(signature) ? "" : " (expected sha256=<64 hex digits>)";
    const which = secrets.length === 1 ? "the configured secret" : `any of the ${secrets.length} configured secrets`;
    return { valid: false, reason: `the signature does not match ${which}${shape}` };
  }
  const payload = decodeSignedData(envelope.envelope.signedData);
  return {
    valid: true,
    label,
    event: payload.parsed ? payload.value.event : null,
    unparsedReason: payload.parsed ? null : payload.reason,
    envelopeMismatch: envelopeMismatch(envelope.envelope, payload),
    payload: payload.value !== undefined ? payload.value : payload.text,
  };
}

function formatVerdict(result: Verdict): string {
  if (!result.valid) return `invalid: ${result.reason}\n`;
  return [
    `valid: signed with the secret labelled "${result.label}"`,
    result.unparsedReason === null
      ? `event: ${JSON.stringify(result.event)}`
      : `event: none, stored unparsed (${result.unparsedReason})`,
    result.envelopeMismatch
      ? "envelope: the unsigned top-level copy DIFFERS from the signed payload (the signed one counts)"
      : "envelope: matches the signed payload",
    "payload (signed):",
    JSON.stringify(result.payload, null, 2),
    "",
  ].join("\n");
}

function readBody(path: string): Uint8Array {
  try {
    return readFileSync(path === "-" ? 0 : path);
  } catch (error) {
    throw new UsageError(`--body: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

export const verifyCommand = command("verify", "check a saved delivery's signature offline", HELP, async (argv, env) => {
  const { values } = parse(argv, OPTIONS);
  if (values.body === undefined) throw new UsageError("--body FILE is required (see --help)");
  if (values.signature === undefined) throw new UsageError("--signature VALUE is required (see --help)");
  const body = readBody(values.body);
  const secrets = loadSecrets(values, env);
  // Accept the value alone or the whole header line as copied from a log.
  const signature = values.signature.trim().replace(new RegExp(`^${SIGNATURE_HEADER}\\s*:\\s*`, "i"), "");
  const result = verdict(body, signature, secrets);
  process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : formatVerdict(result));
  return result.valid ? EXIT.ok : EXIT.failed;
});
