// Talking to the console as a browser does, without one: forms posted urlencoded, the session
// cookie carried by hand, the CSRF token read from the page.
import { SESSION_COOKIE } from "../../src/console/console.ts";
import { QUERY_TOKEN } from "./server.ts";

export const form = (fields: Record<string, string>) => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(fields).toString(),
  redirect: "manual" as const,
});

/** The session cookie's `name=value` from a Set-Cookie header, or null. */
export function sessionCookie(response: Response): string | null {
  const header = response.headers.get("set-cookie");
  const match = header === null ? null : new RegExp(`^${SESSION_COOKIE}=([^;]*)`).exec(header);
  return match === null || match[1] === "" ? null : `${SESSION_COOKIE}=${match[1]}`;
}

export async function login(url: string, token = QUERY_TOKEN, headers: Record<string, string> = {}): Promise<Response> {
  const request = form({ token });
  return fetch(`${url}/console/login`, { ...request, headers: { ...request.headers, ...headers } });
}

/** Logs in and returns the cookie and a page's CSRF token. */
export async function session(url: string): Promise<{ cookie: string; csrf: string }> {
  const cookie = sessionCookie(await login(url));
  if (cookie === null) throw new Error("login failed");
  const page = await (await fetch(`${url}/console/events`, { headers: { cookie } })).text();
  const csrf = /name="csrf" value="([^"]+)"/.exec(page)?.[1];
  if (csrf === undefined) throw new Error("no CSRF token on the page");
  return { cookie, csrf };
}
