// Parsers page: every device type with a parser, and a way to start a new one.
import { api, itemsOf } from "./api.js";
import { $, badge, el, guard, notify, when } from "./ui.js";

function row(p) {
  const name = p.device_type;
  return el("tr", { dataset: { type: name } },
    el("td", {}, el("a", { href: `/parsers/${encodeURIComponent(name)}` }, el("strong", {}, name))),
    el("td", {}, p.active_version ? badge(`v${p.active_version}`, "ok") : badge("none", "warn")),
    el("td", {}, `v${p.latest_version}`),
    el("td", {}, when(p.updated_at)));
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
