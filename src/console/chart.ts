// Deliveries and refusals per minute as inline SVG: markup, not script, so the strict CSP allows
// it, and styled by the console's stylesheet (classes only). The two lines differ in dash as well
// as colour, and the legend names them; minutes before the process started are shaded and named.
import type { MinuteCounts } from "../http/activity.ts";
import { html, type Html } from "./html.ts";

const WIDTH = 720;
const HEIGHT = 200;
const LEFT = 44;
const BOTTOM = 24;
const TOP = 8;

/**
 * @param startedAt when this process started (ms): the minutes that ended before it were not
 *   counted, so they are shaded and labelled rather than drawn as zeros.
 */
export function activityChart(minutes: MinuteCounts[], startedAt: number): Html {
  const peak = Math.max(1, ...minutes.map((m) => Math.max(m.accepted, m.refused)));
  const plotWidth = WIDTH - LEFT - 8;
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const x = (i: number) => LEFT + (minutes.length <= 1 ? 0 : (i / (minutes.length - 1)) * plotWidth);
  const y = (n: number) => TOP + plotHeight - (n / peak) * plotHeight;
  const firstCounted = Math.max(0, minutes.findIndex((m) => m.start + 60_000 > startedAt));
  const counted = minutes.slice(firstCounted);
  const line = (value: (m: MinuteCounts) => number) => counted.map((m, i) => `${x(firstCounted + i).toFixed(1)},${y(value(m)).toFixed(1)}`).join(" ");
  const hours = Math.round(minutes.length / 60);
  const shaded = x(firstCounted) - LEFT;
  const notCounted =
    firstCounted > 0 &&
    html`<rect class="not-counted" x="${LEFT}" y="${TOP}" width="${shaded.toFixed(1)}" height="${plotHeight}"></rect>
${shaded > 80 && html`<text class="label" x="${(LEFT + shaded / 2).toFixed(1)}" y="${TOP + plotHeight / 2}" text-anchor="middle">not running</text>`}`;
  return html`<figure class="chart">
<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="chart-title">
<title id="chart-title">Deliveries accepted and refused per minute, last ${hours} hours; peak ${peak} a minute</title>
${notCounted}
<line class="axis" x1="${LEFT}" y1="${TOP}" x2="${LEFT}" y2="${TOP + plotHeight}"></line>
<line class="axis" x1="${LEFT}" y1="${TOP + plotHeight}" x2="${WIDTH - 8}" y2="${TOP + plotHeight}"></line>
<text class="label" x="${LEFT - 6}" y="${TOP + 10}" text-anchor="end">${peak}</text>
<text class="label" x="${LEFT - 6}" y="${TOP + plotHeight}" text-anchor="end">0</text>
<text class="label" x="${LEFT}" y="${HEIGHT - 6}">${hours} h ago</text>
<text class="label" x="${WIDTH - 8}" y="${HEIGHT - 6}" text-anchor="end">now</text>
<polyline class="series accepted" points="${line((m) => m.accepted)}"></polyline>
<polyline class="series refused" points="${line((m) => m.refused)}"></polyline>
</svg>
<figcaption><span class="key accepted">solid line: accepted</span> <span class="key refused">dashed line: refused</span> (per minute; the top of the scale is ${peak})${firstCounted > 0 && html`; the shaded part, "not running", is before this receiver started and was not counted`}</figcaption>
</figure>`;
}
