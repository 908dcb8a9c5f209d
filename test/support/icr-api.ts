// A stand-in for ICR's API on loopback, as its documentation describes the endpoints reconciliation
// uses: `GET /app/installations` and `POST /app/installations/{id}/accessTokens` with the app's
// JWT (RS256, verified with the app's public key: iss, iat, exp checked), `GET /v1/transactions`
// with an installation access token; `limit`/`page` pagination (pages from 0, capped smaller than
// asked, so a short page is not the last), `x-icr-api-version` required. It also answers 429 with
// Retry-After and 500 now and then, on a fixed rhythm, so that every run meets both.
import { randomBytes, verify, type KeyObject } from "node:crypto";
import type { IcrInstallation, IcrTransaction } from "../../src/reconcile/icr-api.ts";

export interface StandInData {
  installations: (Omit<IcrInstallation, "organizationId"> & { organizationId: string })[];
  /** Transactions by the installation whose token lists them. */
  transactions: Map<string, IcrTransaction[]>;
}

export interface StandInOptions {
  appId: string;
  publicKey: KeyObject;
  data: StandInData;
  /** `{"installations": [...]}` (the default) or a bare array. */
  installationsShape?: "object" | "array";
  /** The most items a page holds, whatever `limit` asks. */
  maxPageSize?: number;
  /** Every Nth request is answered 500 (0: never). */
  failEvery?: number;
  /** Every Nth request is answered 429 with Retry-After: 1 (0: never). */
  rateLimitEvery?: number;
}

export interface StandIn {
  url: string;
  /** Every JWT and access token it saw or issued: none may show up in any output of the receiver. */
  secretsSeen: Set<string>;
  requests: { method: string; path: string; status: number; page: string | null }[];
  stop(): void;
}

/** Why a JWT is refused, or null when ICR would take it. */
export function jwtRefusal(jwt: string, appId: string, publicKey: KeyObject, now = Math.floor(Date.now() / 1000)): string | null {
  const [header, claims, signature, ...rest] = jwt.split(".");
  if (header === undefined || claims === undefined || signature === undefined || rest.length > 0) return "not a JWT";
  let parsed: { alg?: string; iss?: unknown; iat?: unknown; exp?: unknown };
  try {
    const h = JSON.parse(Buffer.from(header, "base64url").toString());
    if (h.alg !== "RS256") return "not RS256";
    parsed = JSON.parse(Buffer.from(claims, "base64url").toString());
  } catch {
    return "not a JWT";
  }
  if (!verify("sha256", Buffer.from(`${header}.${claims}`), publicKey, Buffer.from(signature, "base64url"))) return "bad signature";
  if (parsed.iss !== appId) return "wrong issuer";
  if (typeof parsed.iat !== "number" || parsed.iat > now + 30) return "issued in the future";
  if (typeof parsed.exp !== "number" || parsed.exp <= now) return "expired";
  if (parsed.exp > now + 600) return "expires more than 10 minutes ahead";
  return null;
}

export function startIcrStandIn({ appId, publicKey, data, installationsShape = "object", maxPageSize = 3, failEvery = 0, rateLimitEvery = 0 }: StandInOptions): StandIn {
  const secretsSeen = new Set<string>();
  const requests: StandIn["requests"] = [];
  const tokens = new Map<string, string>();
  let count = 0;
  const json = (body: unknown, status = 200) => Response.json(body, { status });
  const page = <T>(items: T[], url: URL) => {
    const limit = Math.min(Number(url.searchParams.get("limit") ?? 10), maxPageSize);
    const index = Number(url.searchParams.get("page") ?? 0);
    return items.slice(index * limit, index * limit + limit);
  };
  const answer = (request: Request, url: URL): Response => {
    count++;
    if (request.headers.get("x-icr-api-version") !== "2023-06-16") return json({ message: "x-icr-api-version missing" }, 400);
    if (failEvery > 0 && count % failEvery === 0) return json({ message: "internal error" }, 500);
    if (rateLimitEvery > 0 && count % rateLimitEvery === 0) return new Response("slow down", { status: 429, headers: { "retry-after": "1" } });
    const bearer = /^Bearer (.+)$/.exec(request.headers.get("authorization") ?? "")?.[1];
    if (bearer === undefined) return json({ message: "no token" }, 401);
    secretsSeen.add(bearer);
    if (url.pathname.startsWith("/app/")) {
      if (jwtRefusal(bearer, appId, publicKey) !== null) return json({ message: "bad JWT" }, 401);
      if (request.method === "GET" && url.pathname === "/app/installations") {
        const items = page(data.installations, url).map(({ organizationId, ...i }) => ({ ...i, appId, organization: { id: organizationId } }));
        return json(installationsShape === "array" ? items : { installations: items });
      }
      const match = /^\/app\/installations\/([^/]+)\/accessTokens$/.exec(url.pathname);
      if (request.method === "POST" && match && data.installations.some((i) => i.id === decodeURIComponent(match[1]!))) {
        const token = `crs_${randomBytes(24).toString("hex")}`;
        tokens.set(token, decodeURIComponent(match[1]!));
        secretsSeen.add(token);
        return json({ id: crypto.randomUUID(), token, expiresAt: new Date(Date.now() + 3600_000).toISOString(), isActive: true, appId });
      }
      return json({ message: "not found" }, 404);
    }
    if (request.method === "GET" && url.pathname === "/v1/transactions") {
      const installation = tokens.get(bearer);
      if (installation === undefined) return json({ message: "bad token" }, 401);
      return json({ transactions: page(data.transactions.get(installation) ?? [], url) });
    }
    return json({ message: "not found" }, 404);
  };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const url = new URL(request.url);
      const response = answer(request, url);
      requests.push({ method: request.method, path: url.pathname, status: response.status, page: url.searchParams.get("page") });
      return response;
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, secretsSeen, requests, stop: () => void server.stop(true) };
}
