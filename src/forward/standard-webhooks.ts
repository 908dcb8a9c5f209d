// Standard Webhooks (standardwebhooks.com), as the receiver signs what it forwards: pure functions,
// no I/O. The app verifies a request with any Standard Webhooks library and the same secret.

/** The message id of an event: its payload's digest, so the same on every retry, every replay and
 * on every receiver that took the same ICR payload. */
export function webhookId(payloadSha256: string): string {
  return `msg_${payloadSha256}`;
}

/** `v1,<base64 HMAC-SHA256 over "id.timestamp.body">` for each `whsec_` secret, space-separated. */
export function webhookSignature(secrets: readonly string[], id: string, timestamp: number, body: Uint8Array | string): string {
  const signed = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  return secrets
    .map((secret) => {
      const key = Buffer.from(secret.slice("whsec_".length), "base64");
      const hmac = new Bun.CryptoHasher("sha256", key).update(`${id}.${timestamp}.`).update(signed).digest("base64");
      return `v1,${hmac}`;
    })
    .join(" ");
}
