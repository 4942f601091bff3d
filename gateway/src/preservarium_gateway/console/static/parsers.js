// Parsers page: every device type with a parser, and a way to start a new one.
import { api, itemsOf } from "./api.js";
import { $, badge, el, guard, notify, when } from "./ui.js";

function row(p) {
  const name = p.type ?? p.name ?? p.device_type;
  const active = p.active_version ?? p.active;
  const count = p.versions ?? p.version_count ?? p.latest_version;
  return el("tr", { dataset: { type: name } },
    el("td", {}, el("a", { href: `/parsers/${encodeURIComponent(name)}` }, el("strong", {}, name))),
    el("td", {}, active ? badge(`v${active}`, "ok") : badge("none", "warn")),
    el("td", {}, Array.isArray(count) ? count.length : count ?? "—"),
    el("td", {}, when(p.updated_at ?? p.created_at ?? p.activated_at)));
}

async function load() {
  const body = $("#parsers tbody");
  try {
    const parsers = itemsOf(await api("GET", "/parsers"));
    body.replaceChildren(...(parsers.length ? parsers.map(row)
      : [el("tr", {}, el("td", { colspan: 4, class: "empty" }, "No parser yet."))]));
  } catch (err) {
    notify($("#error"), err);
  }
}

if (guard()) {
  $("#new-type").addEventListener("submit", (event) => {
    event.preventDefault();
    location.assign(`/parsers/${encodeURIComponent($("#new-type-name").value.trim())}`);
  });
  load();
}
