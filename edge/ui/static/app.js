// store-edge dashboard: live regions, CSRF on fetches, the cashier's scan field. No framework.
"use strict";

const csrf = () => document.body.dataset.csrf || "";

async function refresh(region) {
  // never swap a region under someone's fingers: a half-typed note would be lost
  if (region.contains(document.activeElement) && document.activeElement !== document.body) return;
  const name = region.dataset.live;
  const url = new URL(window.location.href);
  url.searchParams.set("fragment", name);
  try {
    const response = await fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" });
    if (response.status === 401) { window.location.href = "/ui/login?next=" + encodeURIComponent(location.pathname); return; }
    if (!response.ok) return;
    const html = await response.text();
    if (region.innerHTML !== html) { region.innerHTML = html; region.dispatchEvent(new Event("refreshed")); }
  } catch (e) { /* the next change retries */ }
}

let pending = null;
function refreshAll() {
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    document.querySelectorAll("[data-live]").forEach(refresh);
  }, 100);
}

function listen() {
  if (!document.querySelector("[data-live]") || !window.EventSource || !csrf()) return;
  // from the version this page was read at: a change since then refreshes it at once
  const since = document.body.dataset.liveVersion;
  const source = new EventSource("/ui/events" + (since ? "?since=" + encodeURIComponent(since) : ""));
  source.addEventListener("change", refreshAll);
}

// Forms marked data-fetch are sent without leaving the page; the answer (HTML) replaces data-target.
function fetchForms() {
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!form.matches("form[data-fetch]")) return;
    event.preventDefault();
    const target = document.querySelector(form.dataset.target);
    const body = new FormData(form);
    const submitter = event.submitter;
    if (submitter && submitter.name) body.append(submitter.name, submitter.value);
    const response = await fetch(form.action, { method: "POST", body, credentials: "same-origin",
                                                headers: { "X-CSRF-Token": csrf(), "X-Requested-With": "fetch" } });
    if (target) target.innerHTML = await response.text();
    if (form.dataset.reset !== undefined) form.reset();
    const focus = document.querySelector("[data-autofocus]");
    if (focus) focus.focus();
    refreshAll();
  });
}

document.addEventListener("DOMContentLoaded", () => { listen(); fetchForms(); });
