// Which request headers the log keeps with a delivery. Everything that helps an operator trace a
// delivery (its proxy's forwarding headers, the signature, the encoding it arrived in) is kept;
// credentials never are: the log is append-only and copied into every backup, so a credential
// written there could never be taken back.

/** Headers that carry credentials by definition, whatever their value. */
export const CREDENTIAL_HEADERS = ["authorization", "proxy-authorization", "cookie"] as const;

/** What a credential is replaced by: the header's presence stays visible, its value does not. */
export const REDACTED = "[redacted]";

const credentialHeaders = new Set<string>(CREDENTIAL_HEADERS);

/** True when a value is one of the secrets, alone or after an auth scheme (`Bearer <token>`). */
function carriesSecret(value: string, secrets: readonly string[]): boolean {
  for (const secret of secrets) {
    if (secret === "") continue;
    if (value === secret) return true;
    const space = value.indexOf(" ");
    if (space > 0 && value.slice(space + 1).trim() === secret) return true;
  }
  return false;
}

/**
 * The request's headers as the JSON object text the log stores (lower-case names), with every
 * credential header and every header whose value is one of `secrets` (the query token) redacted.
 */
export function storedHeaders(headers: Headers, secrets: readonly string[]): string {
  // No prototype: a header named __proto__ is data like any other.
  const kept: Record<string, string> = Object.create(null);
  for (const [name, value] of headers) {
    kept[name] = credentialHeaders.has(name) || carriesSecret(value, secrets) ? REDACTED : value;
  }
  return JSON.stringify(kept);
}

/** Stored headers with credential headers redacted: rows written before the door dropped them. */
export function redactCredentials(headers: Record<string, string>): Record<string, string> {
  for (const name of CREDENTIAL_HEADERS) if (Object.hasOwn(headers, name)) headers[name] = REDACTED;
  return headers;
}
