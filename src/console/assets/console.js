// The console's only script: the events page's live list. New events arrive over the event stream
// (same origin, the session cookie) and are put at the top of the table; nothing else on any page
// needs JavaScript. Every value is set as text, never as markup.
"use strict";

function cell(row, label, content) {
  const td = document.createElement("td");
  td.dataset.label = label;
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  row.append(td);
  return td;
}

function state(className, text) {
  const span = document.createElement("span");
  span.className = "state " + className;
  span.textContent = text;
  return span;
}

function time(iso) {
  const element = document.createElement("time");
  element.dateTime = iso;
  element.textContent = iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
  return element;
}

function orNone(value) {
  if (value !== null && value !== undefined) return String(value);
  const span = document.createElement("span");
  span.className = "muted";
  span.textContent = "none";
  return span;
}

function eventRow(event) {
  const row = document.createElement("tr");
  row.className = "new";
  row.id = "event-" + event.id;
  const link = document.createElement("a");
  link.href = "/console/events/" + encodeURIComponent(event.id);
  link.textContent = String(event.id);
  cell(row, "Id", link);
  cell(row, "Received", time(event.receivedAt));
  cell(row, "Event", event.parsed ? String(event.event) : state("warn", "unparsed: " + event.unparsedReason));
  cell(row, "Organization", orNone(event.organizationId));
  cell(row, "Installation", orNone(event.installationId));
  const deliveries = cell(row, "Deliveries", String(event.deliveryCount));
  if (event.envelopeMismatch) deliveries.append(" ", state("warn", "envelope mismatch"));
  return row;
}

function followEvents(rows) {
  const status = document.getElementById("live");
  const say = (state, text) => {
    if (status === null) return;
    status.dataset.state = state;
    status.textContent = text;
  };
  const shown = new Set([...rows.querySelectorAll("tr td:first-child a")].map((a) => a.textContent));
  const source = new EventSource(rows.dataset.stream);
  say("connecting", "Live: connecting…");
  source.onopen = () => say("connected", "Live: new events appear at the top as they are stored.");
  // EventSource reconnects by itself after a dropped connection, but gives up (CLOSED) on an answer
  // that is not a stream: the session ended (401) or the receiver has no stream to spare (503).
  source.onerror = () =>
    source.readyState === EventSource.CLOSED
      ? say("stopped", "Live: stopped — reload or log in again.")
      : say("reconnecting", "Live: connection lost, reconnecting…");
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (shown.has(String(event.id))) return;
    shown.add(String(event.id));
    document.getElementById("no-events")?.remove();
    rows.prepend(eventRow(event));
  };
}

const rows = document.getElementById("event-rows");
if (rows !== null && rows.dataset.stream) followEvents(rows);
