// Reconciliation: what ICR's API says is true (active installations, transactions) against what
// the log holds, and the differences as gaps. A gap is a report: nothing here writes an event,
// and nothing could, since only ICR can sign one.
import type { InstallationFact, ReconcileFacts, TransactionFact } from "../log/event-log.ts";
import type { IcrInstallation, IcrTransaction } from "./icr-api.ts";

export const GAP_KINDS = ["missed_installation", "missed_uninstallation", "missed_transaction"] as const;
export type GapKind = (typeof GAP_KINDS)[number];

/** What the log last saw of the installation or transaction, when it saw anything. */
export interface LogSide {
  event: string;
  eventId: number;
  receivedAt: string;
  status?: string | null;
  updatedAt?: string | null;
}

/**
 * One difference between ICR and the log.
 * - `missed_installation`: ICR lists the installation as active; the log never saw its
 *   `installed` event, or its last lifecycle event there is `uninstalled` (a reinstall was missed).
 * - `missed_uninstallation`: the log holds the installation as installed; ICR no longer lists it.
 * - `missed_transaction`: ICR has the transaction (created or updated since `since`); the log has
 *   no event for it, or only an older state than ICR's.
 */
export interface Gap {
  kind: GapKind;
  installationId: string;
  transactionId: string | null;
  /** What ICR says (null for a missed uninstallation: ICR no longer lists it). */
  icr: Record<string, unknown> | null;
  log: LogSide | null;
}

export interface ReconcileResult {
  startedAt: string;
  finishedAt: string;
  /** Transactions (and installations) created or updated before this were not compared. */
  since: string | null;
  installationsChecked: number;
  transactionsChecked: number;
  counts: Record<GapKind, number>;
  gaps: Gap[];
}

/** What reconciliation reads of ICR. */
export interface IcrSource {
  installations(): Promise<IcrInstallation[]>;
  installationToken(installationId: string): Promise<string>;
  transactions(installationId: string, token: string): Promise<IcrTransaction[]>;
}

export interface ReconcileOptions {
  /** ISO-8601; default the log's first event. */
  since?: string;
  /** Installations read at once. */
  concurrency?: number;
  /**
   * ICR items changed less than this long before the run are left for the next one: their
   * webhook may be on its way (ICR sends it after the change, not with it).
   */
  settleMs?: number;
  now?: () => number;
}

export const RECONCILE_DEFAULTS = { concurrency: 4, settleMs: 2 * 60_000 };

const time = (iso: string | null | undefined) => (iso == null ? NaN : Date.parse(iso));
/** The later of two ISO times, as milliseconds (NaN when neither is readable). */
const latest = (a: string | null, b: string | null) => Math.max(...[time(a), time(b)].filter((t) => !Number.isNaN(t)), -Infinity);

async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

const logSide = (fact: InstallationFact | TransactionFact, event: string): LogSide =>
  "transactionId" in fact
    ? { event, eventId: fact.eventId, receivedAt: fact.receivedAt, status: fact.status, updatedAt: fact.updatedAt }
    : { event, eventId: fact.eventId, receivedAt: fact.receivedAt };

/**
 * Compares ICR (read first) with the log (read after it, so that a delivery that arrived meanwhile
 * counts as seen). Log facts newer than the start of the run are never held against ICR's older
 * listing; ICR items changed within `settleMs` before it are left for the next run.
 */
export function compare(
  icr: { installations: IcrInstallation[]; transactions: { installationId: string; transaction: IcrTransaction }[] },
  facts: ReconcileFacts,
  { since, startedAtMs, settleMs }: { since: string | null; startedAtMs: number; settleMs: number },
): Gap[] {
  const gaps: Gap[] = [];
  const sinceMs = since === null ? -Infinity : time(since);
  const settledBefore = startedAtMs - settleMs;
  const inWindow = (ms: number) => Number.isNaN(ms) || ms === -Infinity || (ms >= sinceMs && ms < settledBefore);
  const lifecycle = new Map(facts.installations.map((f) => [f.installationId, f]));
  const active = new Set(icr.installations.map((i) => i.id));

  for (const installation of icr.installations) {
    const fact = lifecycle.get(installation.id);
    const icrSide = { active: true, organizationId: installation.organizationId, createdAt: installation.createdAt, updatedAt: installation.updatedAt };
    if (fact === undefined) {
      // Installed before the window (before the log began, by default): not this log's to have seen.
      if (inWindow(time(installation.createdAt))) gaps.push({ kind: "missed_installation", installationId: installation.id, transactionId: null, icr: icrSide, log: null });
    } else if (fact.event === "uninstalled" && time(fact.receivedAt) < startedAtMs) {
      gaps.push({ kind: "missed_installation", installationId: installation.id, transactionId: null, icr: icrSide, log: logSide(fact, "uninstalled") });
    }
  }
  for (const fact of facts.installations) {
    if (fact.event === "installed" && !active.has(fact.installationId) && time(fact.receivedAt) < startedAtMs) {
      gaps.push({ kind: "missed_uninstallation", installationId: fact.installationId, transactionId: null, icr: null, log: logSide(fact, "installed") });
    }
  }

  const seen = new Map(facts.transactions.map((f) => [f.transactionId, f]));
  const reported = new Set<string>();
  for (const { installationId, transaction } of icr.transactions) {
    // A transfer between two organizations that both installed the app is listed under each.
    if (reported.has(transaction.id)) continue;
    const changedMs = latest(transaction.createdAt, transaction.updatedAt);
    if (!inWindow(changedMs)) continue;
    const fact = seen.get(transaction.id);
    const icrSide = { ...transaction };
    if (fact === undefined) {
      gaps.push({ kind: "missed_transaction", installationId, transactionId: transaction.id, icr: icrSide, log: null });
      reported.add(transaction.id);
    } else if (transaction.state !== fact.status) {
      // A different state is a missed event only if ICR's is the newer one (events may arrive out of order).
      const loggedMs = time(fact.updatedAt ?? fact.receivedAt);
      const icrMs = time(transaction.updatedAt);
      if (Number.isNaN(icrMs) || Number.isNaN(loggedMs) || icrMs > loggedMs) {
        gaps.push({ kind: "missed_transaction", installationId, transactionId: transaction.id, icr: icrSide, log: logSide(fact, "transaction") });
        reported.add(transaction.id);
      }
    }
  }
  const order = (g: Gap) => `${GAP_KINDS.indexOf(g.kind)}\u0000${g.installationId}\u0000${g.transactionId ?? ""}`;
  return gaps.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
}

/** Reads ICR (installations, then each one's token and transactions, `concurrency` at once), then the log, and compares. */
export async function reconcile(icr: IcrSource, log: { reconcileFacts(): ReconcileFacts }, options: ReconcileOptions = {}): Promise<ReconcileResult> {
  const now = options.now ?? Date.now;
  const startedAtMs = now();
  const installations = await icr.installations();
  const perInstallation = await mapLimit(installations, options.concurrency ?? RECONCILE_DEFAULTS.concurrency, async ({ id }) => {
    const token = await icr.installationToken(id);
    return (await icr.transactions(id, token)).map((transaction) => ({ installationId: id, transaction }));
  });
  const facts = log.reconcileFacts();
  const since = options.since ?? facts.firstReceivedAt;
  const transactions = perInstallation.flat();
  const gaps = compare({ installations, transactions }, facts, { since, startedAtMs, settleMs: options.settleMs ?? RECONCILE_DEFAULTS.settleMs });
  const counts = Object.fromEntries(GAP_KINDS.map((kind) => [kind, gaps.filter((g) => g.kind === kind).length])) as Record<GapKind, number>;
  return {
    startedAt: new Date(startedAtMs).toISOString(),
    finishedAt: new Date(now()).toISOString(),
    since,
    installationsChecked: installations.length,
    transactionsChecked: new Set(transactions.map((t) => t.transaction.id)).size,
    counts,
    gaps,
  };
}

/** A run as the log keeps it (src/log/event-log.ts ReconcileRunRecord). */
export function runRecord(source: "cli" | "schedule", outcome: { result: ReconcileResult } | { startedAt: string; error: string }) {
  if ("error" in outcome) {
    return {
      startedAt: outcome.startedAt, finishedAt: new Date().toISOString(), source, ok: false, error: outcome.error, since: null,
      installationsChecked: 0, transactionsChecked: 0, missedInstallations: 0, missedUninstallations: 0, missedTransactions: 0, gaps: [],
    };
  }
  const { result } = outcome;
  return {
    startedAt: result.startedAt, finishedAt: result.finishedAt, source, ok: true, error: null, since: result.since,
    installationsChecked: result.installationsChecked, transactionsChecked: result.transactionsChecked,
    missedInstallations: result.counts.missed_installation, missedUninstallations: result.counts.missed_uninstallation,
    missedTransactions: result.counts.missed_transaction, gaps: result.gaps,
  };
}
