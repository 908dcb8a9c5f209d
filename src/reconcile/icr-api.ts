// ICR's API, as much of it as reconciliation reads: the app's active installations (with the
// app's JWT), an installation access token for each, and that installation's transactions (with
// the token). Every request carries `x-icr-api-version`; lists are read page by page until a page
// comes back empty (the largest page ICR serves is not documented, so a short page proves
// nothing); 429 waits for Retry-After, a 5xx or a network failure backs off and retries, a 401
// says which credential ICR refused. No error, log line or result ever holds a JWT, a token or
// the key: only methods, paths and statuses.
import type { IcrApiConfig } from "../config.ts";
import { appJwt } from "./jwt.ts";

export const ICR_API_VERSION = "2023-06-16";

/** An installation as `GET /app/installations` lists it (only what reconciliation reads). */
export interface IcrInstallation {
  id: string;
  organizationId: string | null;
  createdAt: string | null;
  updatedAt: string | null;
}

/** A transaction as `GET /v1/transactions` lists it (only what reconciliation reads and reports). */
export interface IcrTransaction {
  id: string;
  state: string | null;
  action: string | null;
  amount: number | null;
  createdAt: string | null;
  updatedAt: string | null;
  fromOrganizationId: string | null;
  toOrganizationId: string | null;
}

/** ICR could not be read. `credential` names what a 401 refused; the message never holds a secret. */
export class IcrApiError extends Error {
  constructor(
    message: string,
    readonly credential: "app" | "installation" | null = null,
  ) {
    super(message);
  }
}

export interface IcrApiOptions {
  /** Items asked for per page (ICR's documented default is 10; its maximum is not documented). */
  pageSize?: number;
  /** Tries per request before giving up (429s, 5xx, network failures). */
  maxAttempts?: number;
  /** The first backoff after a 5xx or a network failure; doubling, full jitter. */
  backoffMs?: number;
  /** The longest Retry-After honoured; a longer one gives up rather than hold a run for hours. */
  maxRetryAfterMs?: number;
  timeoutMs?: number;
  userAgent?: string;
  /** Aborts every request and wait (a stopping server). */
  signal?: AbortSignal;
}

const text = (value: unknown) => (typeof value === "string" ? value : typeof value === "number" ? String(value) : null);
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/** A list response: a bare array, or an object holding it under `key` (as `/v1/transactions` answers). */
function itemsOf(body: unknown, key: string, where: string): unknown[] {
  if (Array.isArray(body)) return body;
  if (isObject(body) && Array.isArray(body[key])) return body[key] as unknown[];
  throw new IcrApiError(`${where}: ICR answered neither a list nor {"${key}": [...]}`);
}

function installationOf(item: unknown): IcrInstallation | null {
  if (!isObject(item) || text(item.id) === null) return null;
  const organization = isObject(item.organization) ? item.organization : {};
  return { id: text(item.id)!, organizationId: text(organization.id) ?? text(item.organizationId), createdAt: text(item.createdAt), updatedAt: text(item.updatedAt) };
}

function transactionOf(item: unknown): IcrTransaction | null {
  if (!isObject(item) || text(item.id) === null) return null;
  return {
    id: text(item.id)!,
    state: text(item.state),
    action: text(item.action),
    amount: typeof item.amount === "number" ? item.amount : null,
    createdAt: text(item.createdAt),
    updatedAt: text(item.updatedAt),
    fromOrganizationId: text(item.fromOrganizationId),
    toOrganizationId: text(item.toOrganizationId),
  };
}

/** Retry-After in ms: delta-seconds or an HTTP date; null when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | null {
  if (value === null) return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new IcrApiError("stopped"));
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", aborted);
      resolve();
    }
    function aborted() {
      clearTimeout(timer);
      reject(new IcrApiError("stopped"));
    }
    signal?.addEventListener("abort", aborted, { once: true });
  });
}

type Credential = { kind: "app" } | { kind: "installation"; installationId: string; token: string };

export class IcrApi {
  private readonly pageSize: number;
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly timeoutMs: number;

  constructor(
    private readonly config: IcrApiConfig,
    private readonly options: IcrApiOptions = {},
  ) {
    this.pageSize = options.pageSize ?? 100;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.backoffMs = options.backoffMs ?? 500;
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 120_000;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Every installation ICR lists as active for the app. */
  async installations(): Promise<IcrInstallation[]> {
    const items = await this.pages("/app/installations", "installations", { kind: "app" });
    return items.map(installationOf).filter((i): i is IcrInstallation => i !== null);
  }

  /** A fresh installation access token (`POST /app/installations/{id}/accessTokens`). */
  async installationToken(installationId: string): Promise<string> {
    const path = `/app/installations/${encodeURIComponent(installationId)}/accessTokens`;
    const body = await this.request("POST", path, { kind: "app" });
    const token = isObject(body) ? text(body.token) : null;
    if (token === null || token === "") throw new IcrApiError(`POST ${path}: ICR's answer holds no token`);
    return token;
  }

  /** Every transaction the installation's token can see (`GET /v1/transactions`). */
  async transactions(installationId: string, token: string): Promise<IcrTransaction[]> {
    const items = await this.pages("/v1/transactions", "transactions", { kind: "installation", installationId, token });
    return items.map(transactionOf).filter((t): t is IcrTransaction => t !== null);
  }

  /** Pages 0, 1, … until one is empty. An API that ignores `page` would repeat a page forever: refused. */
  private async pages(path: string, key: string, credential: Credential): Promise<unknown[]> {
    const all: unknown[] = [];
    let previous = "";
    for (let page = 0; ; page++) {
      const where = `GET ${path} page ${page}`;
      const items = itemsOf(await this.request("GET", `${path}?limit=${this.pageSize}&page=${page}`, credential), key, where);
      if (items.length === 0) return all;
      const ids = JSON.stringify(items.map((item) => (isObject(item) ? item.id : null)));
      if (ids === previous) throw new IcrApiError(`${where}: the same items as page ${page - 1} (does ICR ignore page=?)`);
      previous = ids;
      all.push(...items);
    }
  }

  private async request(method: "GET" | "POST", pathAndQuery: string, credential: Credential): Promise<unknown> {
    const where = `${method} ${pathAndQuery.split("?")[0]}`;
    let last = "";
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      // A fresh JWT each try: a long Retry-After must not leave the request with an expired one.
      const bearer = credential.kind === "app" ? appJwt(this.config.appId, this.config.privateKey) : credential.token;
      let response: Response;
      try {
        const signals = [AbortSignal.timeout(this.timeoutMs), ...(this.options.signal ? [this.options.signal] : [])];
        response = await fetch(this.config.apiUrl + pathAndQuery, {
          method,
          headers: {
            accept: "application/json",
            authorization: `Bearer ${bearer}`,
            "x-icr-api-version": ICR_API_VERSION,
            ...(this.options.userAgent && { "user-agent": this.options.userAgent }),
          },
          signal: AbortSignal.any(signals),
          redirect: "error",
        });
      } catch (error) {
        if (this.options.signal?.aborted) throw new IcrApiError("stopped");
        // The error's text is the runtime's (a refused connection, a timeout): it holds no header.
        last = `no answer (${(error as Error).name === "TimeoutError" ? "timed out" : (error as Error).message.split("\n")[0]})`;
        await sleep(this.backoff(attempt), this.options.signal);
        continue;
      }
      if (response.ok) {
        try {
          return await response.json();
        } catch {
          throw new IcrApiError(`${where}: ICR's answer is not JSON`);
        }
      }
      await response.body?.cancel();
      if (response.status === 401) throw this.refused(where, credential);
      if (response.status === 429) {
        const wait = retryAfterMs(response.headers.get("retry-after")) ?? this.backoff(attempt);
        if (wait > this.maxRetryAfterMs) throw new IcrApiError(`${where}: ICR asks to wait ${Math.ceil(wait / 1000)}s (429), longer than ${this.maxRetryAfterMs / 1000}s`);
        last = "429";
        await sleep(wait, this.options.signal);
        continue;
      }
      if (response.status >= 500) {
        last = String(response.status);
        await sleep(this.backoff(attempt), this.options.signal);
        continue;
      }
      throw new IcrApiError(`${where}: ICR answered ${response.status}`);
    }
    throw new IcrApiError(`${where}: gave up after ${this.maxAttempts} tries (last: ${last})`);
  }

  /** Full jitter over a doubling ceiling. */
  private backoff(attempt: number): number {
    return Math.random() * this.backoffMs * 2 ** (attempt - 1);
  }

  private refused(where: string, credential: Credential): IcrApiError {
    return credential.kind === "app"
      ? new IcrApiError(
          `${where}: ICR refused the app's JWT (401): check --icr-app-id (${this.config.appId}) and that the private key is this app's and not deleted, and the clock`,
          "app",
        )
      : new IcrApiError(`${where}: ICR refused the installation access token of installation ${credential.installationId} (401)`, "installation");
  }
}
