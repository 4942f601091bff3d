// Devices page: the registry, searchable and filtered by type and authentication. Each
// list item carries its auth kind, last contact and number of pending commands: one
// request per page.
import { api, itemsOf } from "./api.js";
import { $, badge, el, guard, notify, when } from "./ui.js";

const PAGE = 25;
let cursors = [null]; // the cursor of each page shown so far
let generation = 0; // a newer load makes the answer of an older one moot

function row(d) {
  const pending = d.pending_commands || 0;
  return el("tr", { dataset: { device: d.id } },
    el("td", {}, el("a", { href: `/devices/${encodeURIComponent(d.id)}` }, el("code", {}, d.id))),
    el("td", {}, el("a", { href: `/parsers/${encodeURIComponent(d.device_type)}` }, d.device_type)),
    el("td", { class: "auth" }, badge(d.auth, d.auth === "none" ? "" : "warn")),
    el("td", { class: "contact" }, when(d.last_contact_at)),
    el("td", { class: "pending" }, pending ? badge(`${pending} pending`, "info")
      : el("span", { class: "subtitle" }, "none")));
}

async function load() {
  const mine = ++generation;
  const box = $("#error");
  const body = $("#devices tbody");
  const query = { q: $("#q").value.trim(), type: $("#type").value, auth: $("#auth").value,
    limit: PAGE, cursor: cursors.at(-1) };
  try {
    const page = await api("GET", "/devices", { query });
    if (mine !== generation) return;
    const devices = itemsOf(page);
    notify(box, null);
    const rows = devices.map(row);
    body.replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No device matches."))]));
    const first = (cursors.length - 1) * PAGE;
    $("#count").textContent = devices.length ? `devices ${first + 1}–${first + devices.length}` : "";
    $("#next").disabled = !page.next_cursor;
    $("#next").onclick = () => {
      cursors.push(page.next_cursor);
      load();
    };
    $("#prev").disabled = cursors.length <= 1;
  } catch (err) {
    notify(box, err);
    body.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "Could not load devices.")));
  }
}

async function loadTypes() {
  try {
    const select = $("#type");
    for (const p of itemsOf(await api("GET", "/parsers"))) {
      select.append(el("option", { value: p.device_type }, p.device_type));
    }
  } catch (_) {
    // The type filter is a convenience; the list works without it.
  }
}

if (guard()) {
  $("#filters").addEventListener("submit", (event) => {
    event.preventDefault();
    cursors = [null];
    load();
  });
  $("#prev").addEventListener("click", () => {
    cursors.pop();
    load();
  });
  loadTypes();
  load();
}
