// The one filter parser of GET /events and the CLI: defaults, each parameter's refusal, times.
import { describe, expect, test } from "bun:test";
import { FILTER_DEFAULTS, FilterError, parseEventFilter } from "../src/log/filter.ts";

const now = new Date("2026-06-01T12:00:00.000Z");

describe("parseEventFilter", () => {
  test("nothing given: the defaults, stated once", () => {
    expect(parseEventFilter({}, now)).toEqual({
      event: undefined,
      installation: undefined,
      organization: undefined,
      since: undefined,
      until: undefined,
      parsed: undefined,
      order: FILTER_DEFAULTS.order,
      limit: FILTER_DEFAULTS.limit,
      after: undefined,
    });
    expect(FILTER_DEFAULTS).toEqual({ limit: 50, maxLimit: 1000, order: "desc" });
  });

  test("every parameter, well formed", () => {
    expect(
      parseEventFilter(
        { event: "installed", installation: "i", organization: "o", since: "2026-01-31", until: "2026-02-01T10:00:00+01:00", parsed: "false", limit: "1000", order: "asc", after: "42" },
        now,
      ),
    ).toEqual({
      event: "installed",
      installation: "i",
      organization: "o",
      since: "2026-01-31T00:00:00.000Z",
      until: "2026-02-01T09:00:00.000Z",
      parsed: false,
      order: "asc",
      limit: 1000,
      after: 42,
    });
    expect(parseEventFilter({ parsed: "true" }, now).parsed).toBe(true);
  });

  test("ages count back from now", () => {
    expect(parseEventFilter({ since: "90s", until: "2h" }, now)).toMatchObject({ since: "2026-06-01T11:58:30.000Z", until: "2026-06-01T10:00:00.000Z" });
    expect(parseEventFilter({ since: "7d" }, now).since).toBe("2026-05-25T12:00:00.000Z");
  });

  test.each([
    ["limit", "0"],
    ["limit", "1001"],
    ["limit", "2.5"],
    ["limit", "abc"],
    ["order", "sideways"],
    ["after", "0"],
    ["after", "-3"],
    ["since", "yesterday"],
    ["until", "2024-13-45T99:99:99Z"],
    ["until", "2024-01-01T10:00"],
    ["event", ""],
    ["installation", "x".repeat(257)],
    ["parsed", "no"],
  ] as const)("%s=%p is refused, naming %s", (parameter, value) => {
    let error: unknown;
    try {
      parseEventFilter({ [parameter]: value }, now);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(FilterError);
    expect((error as FilterError).parameter).toBe(parameter);
    expect((error as FilterError).message.startsWith(`${parameter}: `)).toBe(true);
    // A long value is not repeated back.
    expect((error as FilterError).message).not.toContain("x".repeat(257));
  });
});
