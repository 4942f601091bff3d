// Small DOM helpers shared by the pages: elements, badges, times, bytes, notices.
import { ApiError, session, signOut } from "./api.js";

/** el("td", {class: "mono"}, "text", child...) — attributes, then children (strings are text). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root) => (root || document).querySelector(selector);

const TONES = {
  ok: ["sent", "delivered", "acked", "ok", "active", "parsed", "connected"],
  info: ["queued", "claimed", "published", "pending", "raw"],
  warn: ["expired", "cancelled", "superseded", "warning", "token", "psk", "oscore"],
  bad: ["rejected", "failed", "error", "format_failed", "disconnected"],
};

export function badge(text, tone) {
  const value = String(text ?? "—");
  const found = tone || Object.keys(TONES).find((k) => TONES[k].includes(value.toLowerCase()));
  return el("span", { class: `badge ${found || ""}`, dataset: { value } }, value);
}

/** "12 s ago" / "3 min ago" beside the exact time in the title. */
export function when(iso) {
  if (!iso) return el("span", { class: "muted" }, "never");
  const at = new Date(iso);
  const seconds = Math.round((Date.now() - at.getTime()) / 1000);
  let text;
  if (Number.isNaN(seconds)) text = String(iso);
  else if (seconds < 60) text = `${Math.max(seconds, 0)} s ago`;
  else if (seconds < 3600) text = `${Math.round(seconds / 60)} min ago`;
  else if (seconds < 86400) text = `${Math.round(seconds / 3600)} h ago`;
  else text = at.toISOString().slice(0, 16).replace("T", " ");
  return el("time", { datetime: iso, title: iso }, text);
}

export function b64ToHex(b64) {
  if (!b64) return "";
  const bytes = atob(b64);
  let hex = "";
  for (let i = 0; i < bytes.length; i += 1) hex += bytes.charCodeAt(i).toString(16).padStart(2, "0");
  return hex;
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

/** Shows an error (ApiError or other) in a notice box, or clears the box when err is null. */
export function notify(box, err, tone) {
  box.replaceChildren();
  box.className = "hidden";
  if (!err) return;
  const text = err instanceof ApiError ? err.explain() : String(err.message || err);
  box.className = `notice ${tone || "error"}`;
  box.setAttribute("role", tone === "ok" ? "status" : "alert");
  box.textContent = text;
}

/** Disables every [data-write] control for a read-only token, saying why. */
export function gateWrites(root) {
  if (session.canWrite()) return;
  for (const node of (root || document).querySelectorAll("[data-write]")) {
    node.disabled = true;
    node.title = "Needs a token with the write scope";
  }
  for (const node of (root || document).querySelectorAll("[data-write-note]")) {
    node.classList.remove("hidden");
  }
}

/** Every page but sign-in: no token means the sign-in page; fills the top bar. */
export function guard() {
  if (!session.token()) {
    signOut();
    return false;
  }
  const who = $("#who");
  if (who) {
    const name = session.name();
    const scope = session.scope();
    who.replaceChildren(
      el("span", {}, name ? `${name}` : "signed in"),
      scope ? badge(scope, scope === "read" ? "warn" : "info") : null,
      el("button", { type: "button", id: "signout", onclick: () => signOut() }, "Sign out"),
    );
  }
  gateWrites();
  return true;
}
