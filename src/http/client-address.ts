// Who a request came from, for counting refusals. Behind a reverse proxy on this machine (HAProxy,
// nginx, an SSH tunnel) every socket peer is loopback: counted by socket, one sender of forgeries
// through the proxy would use up everyone's allowance, the operator's console login included.
import { isIP } from "node:net";

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

/** Whether the socket peer is this machine: only then are X-Forwarded-* headers believed. */
export const isLoopback = (peer: string | null) => peer !== null && LOOPBACK.test(peer);

/**
 * The address a refusal limit is counted against: from a loopback peer, the last X-Forwarded-For
 * hop, which the proxy itself appended (HAProxy's `option forwardfor`, nginx's
 * `$proxy_add_x_forwarded_for`), since earlier hops are whatever the sender wrote; otherwise, or
 * when that hop is not an address, the socket peer. Anyone else's X-Forwarded-For is ignored: it
 * would let a sender pick whose allowance it spends.
 */
export function limitedAddress(request: Request, peer: string | null): string {
  const socket = peer ?? "unknown";
  if (!isLoopback(peer)) return socket;
  const hop = request.headers.get("x-forwarded-for")?.split(",").at(-1)?.trim() ?? "";
  return isIP(hop) === 0 ? socket : hop;
}
