// Live page: raw uplinks, parsed data and failures as they arrive, filtered by device and type.
import { stream } from "./api.js";
import { $, b64ToHex, badge, el, guard, json, notify } from "./ui.js";

const KEEP = 200; // rows kept on the page; older ones fall off the bottom
const STREAMS = ["raw", "parsed", "failed"];
let stops = [];
let paused = false;
const connected = new Set();

function detail(name, record) {
  if (name === "raw") {
    return el("code", { class: "hex" }, `${record.method ?? ""} ${record.path || "/"}  ${b64ToHex(record.payload_b64) || "(empty)"}`);
  }
  if (name === "failed") {
    const e = record.error || {};
    return el("span", {}, badge(e.kind ?? "error", "bad"), " ", e.message ?? "");
  }
  const text = JSON.stringify(record.data ?? {});
  const version = record.parser ? `v${record.parser.version} ` : "";
  return el("code", { title: json(record.data ?? {}) }, version + (text.length > 160 ? `${text.slice(0, 160)}…` : text));
}

function add(name, record) {
  if (paused || !record || typeof record !== "object") return;
  const body = $("#feed tbody");
  body.querySelector(".placeholder")?.remove();
  const tones = { raw: "info", parsed: "ok", failed: "bad" };
  const at = record.received_at ?? "";
  const row = el("tr", { class: `new ${name}`, dataset: { stream: name, uplink: record.id, at } },
    el("td", {}, el("time", { datetime: record.received_at, title: record.received_at },
      (record.received_at ?? "").slice(11, 23))),
    el("td", {}, badge(name, tones[name])),
    el("td", {}, el("code", {}, record.device_id ?? "—")),
    el("td", {}, record.device_type ?? ""),
    el("td", {}, detail(name, record)));
  // Newest first by reception time: the three streams deliver at their own pace.
  const older = Array.from(body.rows).find((r) => (r.dataset.at ?? "") < at);
  body.insertBefore(row, older ?? null);
  while (body.rows.length > KEEP) body.deleteRow(-1);
}

function state(name, isConnected, err) {
  if (isConnected) connected.add(name);
  else connected.delete(name);
  if (err) notify($("#error"), err);
  const all = connected.size === stops.length && stops.length > 0;
  $("#live-state").replaceChildren(el("span", { class: `dot ${all ? "on" : "off"}` }),
    all ? "live" : connected.size ? `${connected.size} of ${stops.length} streams` : "connecting…");
}

function follow() {
  for (const stop of stops) stop();
  stops = [];
  connected.clear();
  const query = { device: $("#device").value.trim(), type: $("#type").value.trim() };
  for (const name of STREAMS) {
    if (!$(`#show-${name}`).checked) continue;
    stops.push(stream(name, query, {
      onEvent: (_event, record) => add(name, record),
      onState: (ok, err) => state(name, ok, err),
    }));
  }
  state("", false);
}

if (guard()) {
  const params = new URLSearchParams(location.search);
  $("#device").value = params.get("device") ?? "";
  $("#type").value = params.get("type") ?? "";
  $("#filters").addEventListener("submit", (event) => {
    event.preventDefault();
    follow();
  });
  $("#pause").addEventListener("click", () => {
    paused = !paused;
    $("#pause").textContent = paused ? "Resume" : "Pause";
  });
  $("#clear").addEventListener("click", () => {
    $("#feed tbody").replaceChildren(el("tr", { class: "placeholder" },
      el("td", { colspan: 5, class: "empty" }, "Waiting for traffic…")));
  });
  follow();
}
