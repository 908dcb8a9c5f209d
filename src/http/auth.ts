import { createHash, timingSafeEqual } from "node:crypto";
import { Elysia } from "elysia";
import { HttpError } from "./errors.ts";

const digest = (value: string) => createHash("sha256").update(value, "utf8").digest();

/** Compares two secrets in constant time whatever their lengths (both are hashed first). */
export const sameSecret = (given: string, expected: string) => timingSafeEqual(digest(given), digest(expected));

/** Whether an Authorization header carries `Bearer <token>`, compared with `sameSecret`. */
function bearerMatches(authorization: string | null, token: string): boolean {
  // The scheme is case-insensitive (RFC 9110, 11.1).
  const match = /^Bearer (.+)$/i.exec(authorization ?? "");
  return sameSecret(match?.[1] ?? "", token) && match !== null;
}

/**
 * Requires the query token on every route of the plugin that uses this one. Checked on transform,
 * before parameter validation, so an anonymous caller learns nothing, not even which parameters exist.
 * Only the header counts: a token in the query string would end up in proxy and shell logs.
 */
export const bearerAuth = (token: string) =>
  new Elysia({ name: "bearer-auth" }).onTransform({ as: "scoped" }, ({ request }) => {
    if (!bearerMatches(request.headers.get("authorization"), token)) {
      throw new HttpError(401, "unauthorized", "a valid bearer token is required", {
        "www-authenticate": 'Bearer realm="icr-receiver"',
      });
    }
  });
