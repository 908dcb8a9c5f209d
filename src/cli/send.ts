// `icr-receiver send`: sign a payload as ICR does and POST it, to test an installation end to end.
import { readFileSync } from "node:fs";
import pkg from "../../package.json";
import { signDelivery } from "../verify/sign-delivery.ts";
import { SIGNATURE_HEADER } from "../verify/signature.ts";
import { CliError, command, EXIT, HELP_OPTION, loadSecrets, parse, positiveInteger, SECRET_HELP, SECRET_OPTIONS, UsageError } from "./common.ts";
import { isSampleEvent, SAMPLE_EVENTS, samplePayload } from "./samples.ts";

const DEFAULT_URL = "http://127.0.0.1:4040/webhook";

const OPTIONS = {
  ...HELP_OPTION,
  ...SECRET_OPTIONS,
  url: { type: "string" },
  payload: { type: "string" },
  event: { type: "string" },
  installation: { type: "string" },
  organization: { type: "string" },
  label: { type: "string" },
  repeat: { type: "string" },
  timeout: { type: "string" },
  "dry-run": { type: "boolean" },
} as const;

const HELP = `Usage: icr-receiver send (--event NAME | --payload FILE) [options]

Signs a payload the way ICR does and POSTs it: the body is the payload's fields plus
"signedData" (standard base64 of the compact payload JSON), with the header
${SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256(secret, signedData)>. Prints the HTTP status and the
response body, one line per request.

Options:
  --event NAME             a built-in sample: ${SAMPLE_EVENTS.join(", ")}
                           (fresh timestamps and ids, so each run is a new event)
  --installation ID        the sample's installation id (default sample-installation)
  --organization ID        the sample's organization id (default sample-org)
  --payload FILE           a JSON payload object to sign instead (- reads stdin)
  --url URL                where to POST (default ${DEFAULT_URL})
  --label LABEL            which configured secret signs (default the first one)
  --repeat N               POST the same signed delivery N times, 1-100 (default 1): the repeats are duplicates
  --timeout SECONDS        per request, 1-600 (default 10)
  --dry-run                print the request instead of sending it

${SECRET_HELP}`;

function readPayload(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (error) {
    throw new UsageError(`--payload: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UsageError(`--payload: ${path} is not JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`--payload: ${path} is not a JSON object`);
  }
  if (Object.hasOwn(value, "signedData")) {
    throw new UsageError(`--payload: ${path} already has signedData (it is a delivery body; give the payload alone)`);
  }
  return value as Record<string, unknown>;
}

function parseUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--url: "${value}" is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError(`--url: only http and https are supported`);
  return url;
}

export const sendCommand = command("send", "sign a payload or built-in sample and POST it", HELP, async (argv, env) => {
  const { values } = parse(argv, OPTIONS);
  if ((values.event === undefined) === (values.payload === undefined)) {
    throw new UsageError("give exactly one of --event NAME or --payload FILE (see --help)");
  }
  if (values.event !== undefined && !isSampleEvent(values.event)) {
    throw new UsageError(`--event: no sample for "${values.event}" (${SAMPLE_EVENTS.join(", ")})`);
  }
  if (values.payload !== undefined && (values.installation !== undefined || values.organization !== undefined)) {
    throw new UsageError("--installation and --organization apply to --event samples only");
  }
  const url = parseUrl(values.url ?? DEFAULT_URL);
  const repeat = positiveInteger(values.repeat, "--repeat", 1, 100);
  const timeoutMs = positiveInteger(values.timeout, "--timeout", 10, 600) * 1000;
  const payload =
    values.event !== undefined && isSampleEvent(values.event)
      ? samplePayload(values.event, { installation: values.installation, organization: values.organization })
      : readPayload(values.payload!);

  const secrets = loadSecrets(values, env);
  const chosen = values.label === undefined ? secrets[0] : secrets.find((s) => s.label === values.label);
  if (chosen === undefined) {
    throw new UsageError(`--label: no secret labelled "${values.label}" (configured: ${secrets.map((s) => s.label).join(", ")})`);
  }
  // ICR's own body: the compact payload JSON with its signedData appended.
  const { body, headers: signature } = signDelivery(JSON.stringify(payload), chosen.secret);
  const headers = { "content-type": "application/json", ...signature };

  if (values["dry-run"]) {
    const lines = [`POST ${url.href}`, ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`), "", body];
    process.stdout.write(`${lines.join("\n")}\n`);
    return EXIT.ok;
  }
  let allOk = true;
  for (let i = 0; i < repeat; i++) {
    let response: Response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { ...headers, "user-agent": `icr-receiver-send/${pkg.version}` },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const reason = (error as Error).name === "TimeoutError" ? `no answer within ${timeoutMs / 1000} s` : (error as Error).message;
      throw new CliError(`POST ${url.href}: ${reason}`);
    }
    const text = (await response.text()).replace(/\s+$/, "");
    process.stdout.write(`${response.status} ${response.statusText}${text === "" ? "" : ` ${text}`}\n`);
    allOk &&= response.ok;
  }
  return allOk ? EXIT.ok : EXIT.failed;
});
