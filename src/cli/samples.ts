// Built-in sample payloads, one per documented event name, shaped like real deliveries and like the
// example payload of ICR's webhook documentation. Fresh timestamps (and transaction ids) make each
// one distinct.
import { randomUUID } from "node:crypto";

export const SAMPLE_EVENTS = [
  "installed",
  "uninstalled",
  "suspended",
  "unsuspended",
  "newPermissionsAccepted",
  "warehouseTransaction",
  "organizationTransaction",
] as const;

export type SampleEvent = (typeof SAMPLE_EVENTS)[number];

export function isSampleEvent(name: string): name is SampleEvent {
  return (SAMPLE_EVENTS as readonly string[]).includes(name);
}

export interface SampleOptions {
  installation?: string;
  organization?: string;
  now?: Date;
  /** Makes transaction ids unique. */
  nonce?: string;
}

/** A payload (the object that signedData encodes) for `event`. Pure given `now` and `nonce`. */
export function samplePayload(
  event: SampleEvent,
  { installation = "sample-installation", organization = "sample-org", now = new Date(), nonce = randomUUID() }: SampleOptions = {},
): Record<string, unknown> {
  const at = now.toISOString();
  const api = "https://api.carbonregistry.com";
  const payload: Record<string, unknown> = {
    event,
    state: "",
    installation: {
      id: installation,
      createdAt: "2025-01-01T00:00:00.000Z",
      updatedAt: at,
      organization: { id: organization, name: "Sample Organization", url: `${api}/organizations/${organization}` },
      permissions: {
        organization_info: "VIEW",
        organization_inventory: event === "newPermissionsAccepted" ? "WRITE" : "REQUEST",
        ...(event === "warehouseTransaction" ? { organization_warehouse: "VIEW" } : {}),
      },
      appNameId: "sample-app",
      appId: "sample-app-id",
      accessTokensUrl: `${api}/app/installations/${installation}/accessTokens`,
    },
  };
  if (event === "warehouseTransaction" || event === "organizationTransaction") {
    payload.transaction = {
      id: `sample-${nonce}`,
      createdAt: at,
      updatedAt: at,
      status: "processed",
      type: event === "warehouseTransaction" ? "transfer" : "retire",
      amount: 12.5,
      creditId: "sample-credit",
    };
  }
  payload.sender = { id: "sample-user", email: "operator@example.com", fullName: "Sample Operator", profilePicture: null };
  return payload;
}
