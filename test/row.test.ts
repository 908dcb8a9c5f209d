// The row the log makes of a verified delivery: its columns read from the signed payload.
import { describe, expect, test } from "bun:test";
import { eventFacts } from "../src/log/row.ts";
import { decodeSignedData } from "../src/verify/delivery.ts";

/** A payload as verification decodes it from signed data. */
const payloadOf = (value: unknown) => decodeSignedData(Buffer.from(JSON.stringify(value)).toString("base64"));

describe("eventFacts", () => {
  test("reads ids and the transaction from the signed payload", () => {
    expect(
      eventFacts(
        payloadOf({
          event: "warehouseTransaction",
          installation: { id: "123", appId: "1", organization: { id: "org1" } },
          transaction: { id: "tx", status: "processed", type: "retire", amount: 2.5 },
        }),
      ),
    ).toEqual({
      event: "warehouseTransaction",
      unparsedReason: null,
      installationId: "123",
      organizationId: "org1",
      appId: "1",
      transactionId: "tx",
      transactionStatus: "processed",
      transactionType: "retire",
      transactionAmount: 2.5,
    });
  });

  test("missing or oddly typed fields become null", () => {
    expect(eventFacts(payloadOf({ event: "x", installation: "nope", transaction: { amount: "3" } }))).toEqual({
      event: "x",
      unparsedReason: null,
      installationId: null,
      organizationId: null,
      appId: null,
      transactionId: null,
      transactionStatus: null,
      transactionType: null,
      transactionAmount: null,
    });
    expect(eventFacts(payloadOf({ event: "x", installation: { id: 42 } })).installationId).toBe("42");
  });

  test("an unparsed payload: no event, its reason, and the keys of an object without event", () => {
    expect(eventFacts(payloadOf({ installation: { id: "9", organization: { id: "o" } } }))).toMatchObject({
      event: null,
      unparsedReason: "no_event",
      installationId: "9",
      organizationId: "o",
    });
    expect(eventFacts(decodeSignedData("%%%"))).toMatchObject({ event: null, unparsedReason: "not_base64", installationId: null });
  });
});
