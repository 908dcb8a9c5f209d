// The console's parts on their own: the escaping template, the JSON layout, the per-minute series,
// the origin and scheme checks.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { overHttps, sameOrigin } from "../src/console/console.ts";
import { activityChart } from "../src/console/chart.ts";
import { indentJson } from "../src/console/format.ts";
import { html } from "../src/console/html.ts";
import { MinuteSeries } from "../src/http/activity.ts";

describe("html", () => {
  test("every interpolated value is escaped unless it is markup html made; nothing renders for null, undefined, false", () => {
    const attack = `"><script>alert('x')</script>&`;
    expect(html`<p title="${attack}">${attack}</p>`.text).toBe(
      "<p title=\"&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;\">&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;</p>",
    );
    expect(html`<ul>${["<a>", html`<li>${"<b>"}</li>`]}</ul>`.text).toBe("<ul>&lt;a&gt;<li>&lt;b&gt;</li></ul>");
    expect(html`${null}${undefined}${false}${0}`.text).toBe("0");
  });

  test("no string can open a tag or leave an attribute value", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (value) => {
        const escaped = html`${value}`.text;
        expect(escaped).not.toMatch(/[<>"']/);
        expect(html`<a href="${value}">${value}</a>`.text).toBe(`<a href="${escaped}">${escaped}</a>`);
        expect(escaped.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&")).toBe(value);
      }),
    );
  });
});

describe("indentJson", () => {
  const json = fc.jsonValue();
  test("lays JSON out and changes nothing in it: the same value, every number and escape as written", () => {
    fc.assert(
      fc.property(json, (value) => {
        const text = JSON.stringify(value);
        const laid = indentJson(text);
        expect(JSON.parse(laid)).toEqual(JSON.parse(text));
        expect(indentJson(laid)).toBe(laid);
        expect(laid.replace(/\s+/g, "")).toBe(text.replace(/\s+/g, ""));
      }),
    );
    expect(indentJson('{"big":12345678901234567890,"s":"a\\"b\\\\","e":[],"o":{}}')).toBe(
      '{\n  "big": 12345678901234567890,\n  "s": "a\\"b\\\\",\n  "e": [],\n  "o": {}\n}',
    );
  });
});

describe("MinuteSeries", () => {
  test("counts per minute; minutes without activity are zero; older than its window is forgotten", () => {
    let now = Date.UTC(2026, 11, 1, 12, 0, 30);
    const series = new MinuteSeries(3, () => now);
    series.delivery(true);
    series.delivery(false);
    series.commit(0.002);
    now += 60_000;
    series.delivery(true);
    expect(series.last().map((m) => [m.accepted, m.refused, m.commits])).toEqual([
      [0, 0, 0],
      [1, 1, 1],
      [1, 0, 0],
    ]);
    expect(series.last()[1]!.commitSeconds).toBeCloseTo(0.002);
    now += 3 * 60_000;
    expect(series.last().map((m) => m.accepted)).toEqual([0, 0, 0]);
    series.delivery(true);
    expect(series.last().map((m) => m.accepted)).toEqual([0, 0, 1]);
    expect(series.last().at(-1)!.start).toBe(Date.UTC(2026, 11, 1, 12, 4));
  });
});

describe("where a request comes from", () => {
  const post = (headers: Record<string, string>, url = "http://127.0.0.1:4040/console/login") => new Request(url, { method: "POST", headers });
  const host = { host: "127.0.0.1:4040" };

  test("Sec-Fetch-Site decides when present: same-origin and none (typed by the user) pass, same-site and cross-site do not", () => {
    expect(sameOrigin(post({ ...host, "sec-fetch-site": "same-origin" }), "127.0.0.1")).toBe(true);
    expect(sameOrigin(post({ ...host, "sec-fetch-site": "none" }), "127.0.0.1")).toBe(true);
    expect(sameOrigin(post({ ...host, "sec-fetch-site": "same-site" }), "127.0.0.1")).toBe(false);
    expect(sameOrigin(post({ ...host, "sec-fetch-site": "cross-site" }), "127.0.0.1")).toBe(false);
    // Whatever the Origin says.
    expect(sameOrigin(post({ ...host, "sec-fetch-site": "cross-site", origin: "http://127.0.0.1:4040" }), "127.0.0.1")).toBe(false);
    expect(sameOrigin(post({ ...host, "sec-fetch-site": "same-origin", origin: "null" }), "127.0.0.1")).toBe(true);
  });

  test("without it, the Origin must name the Host; Origin: null proves nothing; no Origin at all is no browser", () => {
    expect(sameOrigin(post({ ...host, origin: "http://127.0.0.1:4040" }), "127.0.0.1")).toBe(true);
    expect(sameOrigin(post({ ...host, origin: "http://127.0.0.1:4041" }), "127.0.0.1")).toBe(false);
    expect(sameOrigin(post({ ...host, origin: "null" }), "127.0.0.1")).toBe(false);
    expect(sameOrigin(post({ ...host, origin: "not a url" }), "127.0.0.1")).toBe(false);
    expect(sameOrigin(post(host), "127.0.0.1")).toBe(true);
  });

  test("X-Forwarded-Host stands for the Host from a proxy on this machine only", () => {
    const proxied = { ...host, origin: "https://console.example", "x-forwarded-host": "console.example" };
    expect(sameOrigin(post(proxied), "127.0.0.1")).toBe(true);
    expect(sameOrigin(post(proxied), "::1")).toBe(true);
    expect(sameOrigin(post(proxied), "192.0.2.44")).toBe(false);
    expect(sameOrigin(post({ ...host, origin: "https://console.example" }), "127.0.0.1")).toBe(false);
  });

  test("HTTPS: the request's own scheme, or X-Forwarded-Proto from a proxy on this machine only", () => {
    expect(overHttps(post({ "x-forwarded-proto": "https" }), "127.0.0.1")).toBe(true);
    expect(overHttps(post({ "x-forwarded-proto": "https" }), "192.0.2.44")).toBe(false);
    expect(overHttps(post({ "x-forwarded-proto": "http" }), "127.0.0.1")).toBe(false);
    expect(overHttps(post({}), "127.0.0.1")).toBe(false);
    expect(overHttps(post({}, "https://console.example/console/login"), "192.0.2.44")).toBe(true);
  });
});

describe("activityChart", () => {
  const hour = Date.UTC(2026, 11, 1, 12);
  const minutes = Array.from({ length: 60 }, (_, i) => ({ start: hour + i * 60_000, accepted: i % 3, refused: i % 2, commits: 0, commitSeconds: 0 }));
  const points = (svg: string, series: string) => new RegExp(`class="series ${series}" points="([^"]*)"`).exec(svg)![1]!.split(" ");

  test("the minutes before the process started are shaded and named, not drawn as zeros", () => {
    // Started 40 s into minute 45: minutes 0-44 were not counted; minute 45 was, in part.
    const svg = activityChart(minutes, hour + 45 * 60_000 + 40_000).text;
    expect(points(svg, "accepted")).toHaveLength(15);
    expect(points(svg, "refused")).toHaveLength(15);
    expect(points(svg, "accepted")[0]).toStartWith(`${(44 + (45 / 59) * 668).toFixed(1)},`);
    expect(svg).toMatch(/<rect class="not-counted" x="44" y="8" width="509\.5" height="168">/);
    expect(svg).toContain(">not running</text>");
    expect(svg).toContain(`the shaded part, "not running", is before this receiver started`);
  });

  test("running for the whole window: every minute drawn, nothing shaded", () => {
    const svg = activityChart(minutes, hour - 3_600_000).text;
    expect(points(svg, "accepted")).toHaveLength(60);
    expect(svg).not.toContain("not-counted");
    expect(svg).not.toContain("not running");
  });
});
