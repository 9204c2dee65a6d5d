// The console's only script (served from /static, so the CSP needs no 'unsafe-inline').
// Every value from the server goes in through textContent, never innerHTML.
"use strict";

function setupTabs() {
  const buttons = document.querySelectorAll(".tabs button[data-tab]");
  if (!buttons.length) return;
  const show = (id) => {
    buttons.forEach((b) => b.classList.toggle("active", b.dataset.tab === id));
    document.querySelectorAll(".tab").forEach((t) => { t.hidden = t.id !== id; });
  };
  buttons.forEach((b) => b.addEventListener("click", () => show(b.dataset.tab)));
  show(buttons[0].dataset.tab);
}

function setupEvidence() {
  document.querySelectorAll("a.evidence-link").forEach((link) => {
    link.addEventListener("click", () => {
      document.querySelectorAll(".event.highlight").forEach((e) => e.classList.remove("highlight"));
      const target = document.getElementById("t-" + link.dataset.timelineIndex);
      if (target) target.classList.add("highlight");
    });
  });
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function setupLive() {
  const table = document.getElementById("live");
  if (!table || !window.EventSource) return;
  const rows = document.getElementById("live-rows");
  const state = document.getElementById("live-state");
  const source = new EventSource(table.dataset.source);
  source.onopen = () => { state.textContent = "connected"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  source.onmessage = (event) => {
    const e = JSON.parse(event.data);
    const tr = document.createElement("tr");
    tr.className = "error-row new";
    tr.dataset.errorId = e.error_id;
    tr.appendChild(cell(e.time));
    const sev = cell("");
    const badge = document.createElement("span");
    badge.className = "sev sev-" + String(e.severity).toLowerCase();
    badge.textContent = e.severity;
    sev.appendChild(badge);
    tr.appendChild(sev);
    tr.appendChild(cell(e.service));
    tr.appendChild(cell(e.resource_id));
    const msg = cell("");
    const a = document.createElement("a");
    a.href = "/errors/" + encodeURIComponent(e.error_id);
    a.textContent = e.message;
    msg.appendChild(a);
    tr.appendChild(msg);
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > 200) rows.removeChild(rows.lastChild);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  setupTabs();
  setupEvidence();
  setupLive();
});
