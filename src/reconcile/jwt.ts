// The app's JSON Web Token, as ICR's "Generate a JWT" page asks for it: RS256 over the claims
// `iss` (the app id), `iat` (60 s in the past, against clock drift) and `exp` (at most 10 minutes
// ahead). node:crypto signs it: the three base64url parts need no JWT library.
import { sign, type KeyObject } from "node:crypto";

/** How far ahead the token expires: ICR refuses more than 10 minutes; a minute's margin for drift. */
export const JWT_LIFETIME_SECONDS = 9 * 60;

const base64url = (value: string | Buffer) => Buffer.from(value).toString("base64url");

/** A JWT for the app `appId`, signed with its private key, issued `nowSeconds` (Unix time) minus 60 s. */
export function appJwt(appId: string, privateKey: KeyObject, nowSeconds = Math.floor(Date.now() / 1000)): string {
  const header = base64url(JSON.stringify({ alg: "RS256", typ: "JWT" }));
  const claims = base64url(JSON.stringify({ iss: appId, iat: nowSeconds - 60, exp: nowSeconds + JWT_LIFETIME_SECONDS }));
  const signature = sign("sha256", Buffer.from(`${header}.${claims}`), privateKey);
  return `${header}.${claims}.${base64url(signature)}`;
}
