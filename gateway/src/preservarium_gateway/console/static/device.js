// Device detail: facts, its commands with their status followed live, and a send form.
import { api, itemsOf, session, stream } from "./api.js";
import { $, b64ToHex, badge, el, gateWrites, guard, notify, when } from "./ui.js";

const deviceId = document.body.dataset.device;
const rows = new Map(); // request_id -> <tr>
const known = new Map(); // request_id -> what is known of the command

function fact(name, value) {
  return [el("dt", {}, name), el("dd", { dataset: { fact: name } }, value)];
}

function showDevice(d) {
  const type = d.device_type;
  $("#device-sub").replaceChildren("Type ", el("a", { href: `/parsers/${encodeURIComponent(type)}` }, type));
  const attributes = d.attributes && Object.keys(d.attributes).length
    ? el("code", {}, JSON.stringify(d.attributes)) : el("span", { class: "subtitle" }, "none");
  $("#facts").replaceChildren(
    ...fact("Type", type),
    ...fact("Authentication", badge(d.auth, d.auth === "none" ? "" : "warn")),
    ...fact("Last contact", when(d.last_contact_at)),
    ...fact("Last authenticated", when(d.last_authenticated_at)),
    ...fact("Registered", when(d.created_at)),
    ...fact("Attributes", attributes));
}

function statusOf(c) {
  return c.status ?? "published";
}

function statusCell(status, reason) {
  const cell = [badge(status, status === "published" ? "info" : undefined)];
  if (reason) cell.push(el("div", { class: "subtitle" }, reason));
  return cell;
}

function commandRow(c) {
  const id = c.request_id;
  const cancel = el("button", { type: "button", class: "danger", "data-write": true,
    onclick: () => cancelCommand(id) }, "Cancel");
  const row = el("tr", { dataset: { request: id } },
    el("td", {}, el("code", { title: id }, id.length > 12 ? `${id.slice(0, 12)}…` : id)),
    el("td", {}, c.command ?? "—"),
    el("td", {}, el("code", {}, JSON.stringify(c.params ?? {}))),
    el("td", { class: "status" }, statusCell(statusOf(c), c.reason)),
    el("td", { class: "changed" }, when(c.at ?? c.sent_at ?? c.created_at ?? new Date().toISOString())),
    el("td", { class: "actions" }, statusOf(c) === "queued" ? cancel : null));
  gateWrites(row);
  return row;
}

function upsert(c) {
  const merged = { ...(known.get(c.request_id) || {}), ...c };
  known.set(c.request_id, merged);
  const fresh = commandRow(merged);
  const old = rows.get(c.request_id);
  if (old) old.replaceWith(fresh);
  else {
    const body = $("#commands tbody");
    body.querySelector(".empty")?.closest("tr").remove();
    body.prepend(fresh);
  }
  rows.set(c.request_id, fresh);
}

/** A status record from the stream moves its row; a request sent from elsewhere appears. */
function onStatus(_name, record) {
  if (!record || record.device_id !== deviceId || !record.request_id) return;
  const { request_id, status, at, reason } = record;
  upsert({ request_id, status, at, reason: reason ?? null });
  if (record.payload_b64) {
    rows.get(request_id).querySelector(".status").title = `sent ${b64ToHex(record.payload_b64)}`;
  }
  if (status === "sent") loadDevice(); // a command sent is a contact: new last contact
}

function loadDevice() {
  api("GET", `/devices/${encodeURIComponent(deviceId)}`)
    .then(showDevice)
    .catch((err) => {
      notify($("#error"), err);
      $("#device-sub").textContent = "";
    });
}

async function loadCommands() {
  const body = $("#commands tbody");
  const commands = itemsOf(await api("GET", "/commands", { query: { device: deviceId, limit: 50 } }));
  rows.clear();
  known.clear();
  body.replaceChildren();
  if (!commands.length) {
    body.append(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No commands yet.")));
  }
  for (const c of commands.slice().reverse()) upsert(c);
}

async function cancelCommand(requestId) {
  try {
    await api("DELETE", `/commands/${encodeURIComponent(requestId)}`);
  } catch (err) {
    notify($("#send-result"), err);
  }
}

function parseParams(text) {
  let params;
  try {
    params = JSON.parse(text.trim() || "{}");
  } catch (err) {
    throw new Error(`Parameters are not valid JSON: ${err.message}`);
  }
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw new Error("Parameters must be a JSON object, like {\"seconds\": 900}");
  }
  return params;
}

async function send(event) {
  event.preventDefault();
  const box = $("#send-result");
  const button = $("#send");
  button.disabled = true;
  try {
    const body = { device_id: deviceId, command: $("#command-name").value.trim(),
      params: parseParams($("#command-params").value) };
    const ttl = $("#command-ttl").value;
    if (ttl) body.ttl_s = Number(ttl);
    const sent = await api("POST", "/commands", { body });
    notify(box, new Error(`Command published: request ${sent.request_id}`), "ok");
    if (!rows.has(sent.request_id)) upsert({ ...body, ...sent, status: "published" });
  } catch (err) {
    notify(box, err);
  } finally {
    button.disabled = !session.canWrite();
  }
}

function liveState(connected) {
  $("#live-state").replaceChildren(el("span", { class: `dot ${connected ? "on" : "off"}` }),
    connected ? "live" : "reconnecting…");
  // What changed while the stream was down is read once more from the API.
  if (connected) loadCommands().catch((err) => notify($("#error"), err));
}

if (guard()) {
  $("#send-form").addEventListener("submit", send);
  loadDevice();
  loadCommands().catch((err) => notify($("#error"), err));
  stream("status", { device: deviceId }, { onEvent: onStatus, onState: liveState });
}
