// Parser page: versions, an editor, tests against examples and recent uplinks, a diff
// between versions, upload and activate (which is also how a version is rolled back).
import { api, itemsOf, session } from "./api.js";
import { diffLines, renderDiff } from "./diff.js";
import { attachEditor } from "./highlight.js";
import { $, b64ToHex, badge, el, gateWrites, guard, json, notify, when } from "./ui.js";

const deviceType = document.body.dataset.type;
const base = `/parsers/${encodeURIComponent(deviceType)}/versions`;
const editor = attachEditor($("#source"), $("#highlight"));
const sources = new Map(); // version -> {source, examples}
let versions = [];

function versionNumber(v) {
  return Number(v.version);
}

function isActive(v) {
  return Boolean(v.active);
}

function examplesText(examples) {
  if (examples === undefined || examples === null) return "";
  return typeof examples === "string" ? examples : json(examples);
}

async function fetchVersion(n) {
  if (!sources.has(n)) sources.set(n, await api("GET", `${base}/${n}`));
  return sources.get(n);
}

async function openVersion(n) {
  try {
    const version = await fetchVersion(n);
    editor.value = version.source ?? "";
    $("#examples").value = examplesText(version.examples);
    $("#editor-origin").textContent = `from version ${n}`;
  } catch (err) {
    notify($("#error"), err);
  }
}

async function activate(n) {
  try {
    await api("POST", `${base}/${n}/activate`);
    notify($("#upload-result"), new Error(`Version ${n} is now active.`), "ok");
    await loadVersions();
  } catch (err) {
    notify($("#upload-result"), err);
  }
}

function versionRow(v, activeNumber) {
  const n = versionNumber(v);
  const active = isActive(v);
  const label = activeNumber !== null && n < activeNumber ? "Roll back to this" : "Activate";
  const row = el("tr", { dataset: { version: n } },
    el("td", {}, el("strong", {}, `v${n}`)),
    el("td", {}, when(v.created_at), v.uploaded_by ? el("div", { class: "subtitle" }, `by ${v.uploaded_by}`) : null),
    el("td", {}, active ? badge("active", "ok") : badge("inactive")),
    el("td", {}, el("div", { class: "row" },
      el("button", { type: "button", class: "open", onclick: () => openVersion(n) }, "Open"),
      active ? null : el("button", { type: "button", class: "activate", "data-write": true,
        onclick: () => activate(n) }, label))));
  gateWrites(row);
  return row;
}

function fillDiffChoices() {
  const numbers = versions.map(versionNumber).sort((x, y) => x - y);
  for (const [id, pick] of [["#diff-a", numbers.at(-2)], ["#diff-b", numbers.at(-1)]]) {
    const select = $(id);
    select.replaceChildren(...numbers.map((n) => el("option", { value: n }, `v${n}`)),
      el("option", { value: "editor" }, "editor"));
    select.value = String(pick ?? numbers.at(-1) ?? "editor");
  }
}

async function loadVersions() {
  const body = $("#versions tbody");
  try {
    versions = itemsOf(await api("GET", base)).sort((x, y) => versionNumber(y) - versionNumber(x));
  } catch (err) {
    if (err.status !== 404) throw err;
    versions = [];
  }
  const active = versions.find(isActive);
  const activeNumber = active ? versionNumber(active) : null;
  $("#parser-sub").textContent = versions.length
    ? `${versions.length} version${versions.length > 1 ? "s" : ""}; active: ${activeNumber ? `v${activeNumber}` : "none"}`
    : "No version yet: write one below and upload it.";
  body.replaceChildren(...(versions.length ? versions.map((v) => versionRow(v, activeNumber))
    : [el("tr", {}, el("td", { colspan: 4, class: "empty" }, "No versions yet."))]));
  fillDiffChoices();
  return activeNumber;
}

async function upload() {
  const box = $("#upload-result");
  const button = $("#upload");
  button.disabled = true;
  try {
    const body = { source: editor.value, activate: $("#activate").checked };
    if ($("#examples").value.trim()) body.examples = $("#examples").value;
    const made = await api("POST", base, { body });
    const n = versionNumber(made);
    const what = made.created ? `Uploaded version ${n}` : `Unchanged: this is version ${n} already`;
    notify(box, new Error(`${what}${body.activate ? ", active" : ""}.`), "ok");
    $("#editor-origin").textContent = `from version ${n}`;
    await loadVersions();
  } catch (err) {
    notify(box, err);
  } finally {
    button.disabled = !session.canWrite();
  }
}

function outcome(result) {
  if (!result) return el("pre", { class: "out" }, "no result");
  if (result.ok === false) {
    const e = result.error || {};
    return el("div", {}, badge(e.kind || "error", "bad"),
      el("pre", { class: "out" }, `${e.message ?? ""}${e.line ? `\n(line ${e.line})` : ""}`));
  }
  const extra = [];
  if (result.reply_hex) extra.push(el("div", {}, "reply ", el("code", {}, result.reply_hex)));
  if (result.command_hex) extra.push(el("div", {}, "command ", el("code", {}, result.command_hex)));
  for (const w of result.warnings || []) extra.push(badge(`warning: ${w}`, "warn"));
  return el("div", {}, badge("ok", "ok"), result.device_id ? el("span", {}, ` device ${result.device_id}`) : null,
    el("pre", { class: "out" }, json(result.data ?? result.output ?? {})), ...extra);
}

function resultsTable(headings, rows) {
  return el("table", { class: "results" },
    el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

async function runExamples() {
  const box = $("#test-error");
  notify(box, null);
  const target = $("#test-results");
  const examples = $("#examples").value;
  if (!examples.trim()) {
    target.replaceChildren();
    notify(box, new Error("There are no examples to run: write some in the examples box (YAML)."));
    return;
  }
  target.replaceChildren(el("p", { class: "subtitle" }, "Running examples…"));
  try {
    const answer = await api("POST", "/parsers/test",
      { body: { source: editor.value, device_type: deviceType, examples } });
    const cases = answer.examples || [];
    const passed = cases.filter((c) => c.ok).length;
    target.replaceChildren(
      el("p", {}, badge(answer.ok ? "all passed" : "failed", answer.ok ? "ok" : "bad"),
        ` ${passed} of ${cases.length} examples passed`),
      resultsTable(["Example", "Result"], cases.map((c) =>
        el("tr", { class: c.ok ? "passed" : "failed" },
          el("td", {}, c.description || `#${c.index + 1}`),
          el("td", {}, c.ok ? badge("ok", "ok")
            : el("div", {}, badge("mismatch", "bad"), el("pre", { class: "out" }, c.mismatch ?? "")))))));
  } catch (err) {
    target.replaceChildren();
    notify(box, err);
  }
}

async function runOnUplinks() {
  const box = $("#test-error");
  notify(box, null);
  const target = $("#test-results");
  const limit = Math.max(1, Math.min(100, Number($("#last-n").value) || 5));
  target.replaceChildren(el("p", { class: "subtitle" }, "Reading recent uplinks…"));
  try {
    const uplinks = itemsOf(await api("GET", "/uplinks", { query: { type: deviceType, limit } }));
    if (!uplinks.length) {
      target.replaceChildren(el("p", { class: "subtitle" }, `No ${deviceType} uplink is in the raw topic yet.`));
      return;
    }
    const rows = uplinks.map((u) => {
      const hex = b64ToHex(u.payload_b64);
      const cell = el("td", {}, el("span", { class: "subtitle" }, "running…"));
      const row = el("tr", { class: "uplink", dataset: { uplink: u.id } },
        el("td", {}, when(u.received_at), el("div", {}, el("code", {}, u.device_id ?? "(route)")),
          el("div", { class: "subtitle" }, `${u.method} ${u.path || "/"}`)),
        el("td", { class: "mono hex" }, hex || "(empty)"),
        cell);
      const body = { source: editor.value, device_type: deviceType, payload_hex: hex, path: u.path ?? "",
        method: u.method ?? "POST", confirmable: u.confirmable ?? true };
      if (u.device_id) body.device_id = u.device_id;
      api("POST", "/parsers/test", { body })
        .then((result) => cell.replaceChildren(outcome(result)))
        .catch((err) => cell.replaceChildren(badge(`error ${err.status ?? ""}`, "bad"),
          el("pre", { class: "out" }, err.explain ? err.explain() : String(err))));
      return row;
    });
    target.replaceChildren(resultsTable(["Uplink", "Payload (hex)", "Output"], rows));
  } catch (err) {
    target.replaceChildren();
    notify(box, err);
  }
}

async function sourceOf(choice) {
  if (choice === "editor") return editor.value;
  return (await fetchVersion(Number(choice))).source ?? "";
}

async function showDiff() {
  const box = $("#diff");
  try {
    const [before, after] = await Promise.all([sourceOf($("#diff-a").value), sourceOf($("#diff-b").value)]);
    box.classList.remove("hidden");
    renderDiff(box, diffLines(before, after));
  } catch (err) {
    notify($("#error"), err);
  }
}

if (guard()) {
  $("#upload").addEventListener("click", upload);
  $("#run-examples").addEventListener("click", runExamples);
  $("#run-uplinks").addEventListener("click", runOnUplinks);
  $("#diff-show").addEventListener("click", showDiff);
  editor.value = "";
  loadVersions()
    .then((active) => (active ? openVersion(active) : null))
    .catch((err) => notify($("#error"), err));
}
