// Sign-in: the pasted token is checked against the API before it is kept.
import { ApiError, call, session } from "./api.js";
import { $, notify } from "./ui.js";

const REASONS = { expired: "Your token was refused (401): it is unknown or has been revoked." };

function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // Only a path on this console: never an address elsewhere.
  const safe = /^\/(?![\/\\])/.test(next) && !next.startsWith("/signin");
  return safe ? next : "/";
}

const box = $("#signin-error");
const reason = new URLSearchParams(location.search).get("reason");
if (REASONS[reason]) notify(box, new Error(REASONS[reason]));

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("#token").value.trim();
  const button = $("#signin-submit");
  button.disabled = true;
  notify(box, null);
  try {
    const who = await call("GET", "/token", { token });
    session.save(token, who);
    location.assign(nextPage());
  } catch (err) {
    const refused = err instanceof ApiError && err.status === 401;
    notify(box, refused ? new Error("This token was refused (401): check that it was copied whole and has not been revoked.") : err);
    button.disabled = false;
  }
});
