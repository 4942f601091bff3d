// Devices page: the registry, searchable and filtered by type and authentication.
import { api, itemsOf } from "./api.js";
import { $, badge, el, guard, notify, when } from "./ui.js";

const PAGE = 50;
let offset = 0;
let cursors = [null];

function deviceId(d) {
  return d.id ?? d.device_id;
}

function pendingCell(d) {
  const pending = d.pending_commands ?? d.pending ?? [];
  const count = Array.isArray(pending) ? pending.length : Number(pending) || 0;
  return count ? badge(`${count} pending`, "info") : el("span", { class: "subtitle" }, "none");
}

function row(d) {
  const id = deviceId(d);
  return el("tr", { dataset: { device: id } },
    el("td", {}, el("a", { href: `/devices/${encodeURIComponent(id)}` }, el("code", {}, id))),
    el("td", {}, d.type ?? d.device_type),
    el("td", {}, badge(d.auth ?? "none", (d.auth ?? "none") === "none" ? "" : undefined)),
    el("td", {}, when(d.last_contact_at ?? d.last_contact)),
    el("td", {}, pendingCell(d)));
}

async function load() {
  const box = $("#error");
  const query = { q: $("#q").value.trim(), type: $("#type").value, auth: $("#auth").value,
    limit: PAGE, offset: cursors.length > 1 ? undefined : offset, cursor: cursors.at(-1) };
  const body = $("#devices tbody");
  try {
    const page = await api("GET", "/devices", { query });
    const devices = itemsOf(page);
    notify(box, null);
    body.replaceChildren(...(devices.length ? devices.map(row)
      : [el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No device matches."))]));
    const total = page && page.total;
    $("#count").textContent = total !== undefined ? `${total} devices` : `${devices.length} shown`;
    const next = page && (page.next_cursor ?? page.cursor);
    $("#next").disabled = next ? false : devices.length < PAGE;
    $("#next").onclick = () => {
      if (next) cursors.push(next);
      else offset += PAGE;
      load();
    };
    $("#prev").disabled = cursors.length <= 1 && offset === 0;
  } catch (err) {
    notify(box, err);
    body.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "Could not load devices.")));
  }
}

async function loadTypes() {
  try {
    const parsers = itemsOf(await api("GET", "/parsers"));
    const select = $("#type");
    for (const p of parsers) {
      const name = p.type ?? p.name ?? p.device_type;
      select.append(el("option", { value: name }, name));
    }
  } catch (_) {
    // The type filter is a convenience; the list works without it.
  }
}

if (guard()) {
  $("#filters").addEventListener("submit", (event) => {
    event.preventDefault();
    offset = 0;
    cursors = [null];
    load();
  });
  $("#prev").addEventListener("click", () => {
    if (cursors.length > 1) cursors.pop();
    else offset = Math.max(0, offset - PAGE);
    load();
  });
  loadTypes();
  load();
}
