// Devices page: the registry, searchable and filtered by type and authentication. The list
// route gives ids and types; each row's auth, last contact and pending commands come from
// the device's own route, a few at a time.
import { api, itemsOf } from "./api.js";
import { $, badge, el, guard, notify, when } from "./ui.js";

const PAGE = 25;
const PARALLEL = 4; // detail requests in flight at once
let cursors = [null]; // the cursor of each page shown so far
let generation = 0; // a newer load makes the details of an older one moot

function row(d) {
  return el("tr", { dataset: { device: d.id } },
    el("td", {}, el("a", { href: `/devices/${encodeURIComponent(d.id)}` }, el("code", {}, d.id))),
    el("td", {}, el("a", { href: `/parsers/${encodeURIComponent(d.device_type)}` }, d.device_type)),
    el("td", { class: "auth" }, el("span", { class: "subtitle" }, "…")),
    el("td", { class: "contact" }, el("span", { class: "subtitle" }, "…")),
    el("td", { class: "pending" }, el("span", { class: "subtitle" }, "…")));
}

function fill(tr, view) {
  const pending = (view.pending_commands || []).length;
  tr.querySelector(".auth").replaceChildren(badge(view.auth, view.auth === "none" ? "" : "warn"));
  tr.querySelector(".contact").replaceChildren(when(view.last_contact_at));
  tr.querySelector(".pending").replaceChildren(pending ? badge(`${pending} pending`, "info")
    : el("span", { class: "subtitle" }, "none"));
}

async function details(rows, mine) {
  const queue = rows.slice();
  const worker = async () => {
    for (let tr = queue.shift(); tr && mine === generation; tr = queue.shift()) {
      try {
        fill(tr, await api("GET", `/devices/${encodeURIComponent(tr.dataset.device)}`));
      } catch (err) {
        tr.querySelector(".pending").replaceChildren(badge(`error ${err.status ?? ""}`, "bad"));
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}

async function load() {
  const mine = ++generation;
  const box = $("#error");
  const body = $("#devices tbody");
  const query = { q: $("#q").value.trim(), type: $("#type").value, auth: $("#auth").value,
    limit: PAGE, cursor: cursors.at(-1) };
  try {
    const page = await api("GET", "/devices", { query });
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
    await details(rows, mine);
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
