// auditsink web UI: local times, tidy filter URLs, clickable rows, live follow. No build step.
"use strict";

const localFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
  hour12: false, timeZoneName: "short",
});

// Show every <time datetime="...Z"> in the viewer's time zone, UTC on hover.
function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (isNaN(when)) continue;
    el.textContent = localFormat.format(when);
    el.title = "UTC: " + el.getAttribute("datetime");
  }
}

// Leave untouched fields out of the query string, so shared links stay short.
function tidyForms() {
  for (const form of document.querySelectorAll("form[method=get]")) {
    form.addEventListener("submit", () => {
      for (const input of form.querySelectorAll("input, select")) {
        if (input.name && input.value === "") input.disabled = true;
      }
      setTimeout(() => form.querySelectorAll(":disabled").forEach((i) => { i.disabled = false; }), 0);
    });
  }
}

// A click anywhere on an event row opens its request (the time cell is the keyboard link).
function clickableRows(root) {
  root.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-href]");
    if (!row || event.target.closest("a, button, input")) return;
    if (window.getSelection().toString()) return; // selecting text is not a click-through
    window.location.href = row.dataset.href;
  });
}

function cell(text, href) {
  const td = document.createElement("td");
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  } else {
    td.textContent = text;
  }
  return td;
}

// The same row as the server renders (textContent only: event data is never parsed as HTML).
function eventRow(e) {
  const tr = document.createElement("tr");
  tr.dataset.id = e.id;
  tr.dataset.href = e.request_url;
  tr.className = "new";
  const when = document.createElement("time");
  when.setAttribute("datetime", e.time);
  when.textContent = e.time;
  const first = cell("", e.request_url);
  first.firstChild.appendChild(when);
  tr.appendChild(first);
  const place = (e.namespace ? e.namespace + "/" : "") + e.name;
  tr.append(cell(e.cluster || "–"), cell(e.user || "(none)", e.user_url), cell(e.verb),
            cell(e.resource || e.uri), cell(place, e.object_url), cell(e.code ? String(e.code) : "–"),
            cell(e.level), cell(e.stage));
  return tr;
}

// Follow mode: poll the page's JSON twin for events newer than the newest shown.
function follow() {
  const button = document.getElementById("follow");
  const table = document.querySelector("#event-table tbody");
  if (!button || !table) return;
  const status = document.getElementById("follow-status");
  let newest = Number(button.dataset.newest || 0);
  let timer = null;
  async function poll() {
    const params = new URLSearchParams(window.location.search);
    params.delete("before");
    params.set("after", String(newest));
    try {
      const answer = await fetch("/ui/events.json?" + params.toString(), {headers: {Accept: "application/json"}});
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const page = await answer.json();
      const rows = page.events.filter((e) => e.id > newest);
      if (rows.length) {
        table.querySelector("tr.empty")?.remove();
        for (const e of rows.slice().reverse()) table.prepend(eventRow(e));
        newest = Math.max(newest, ...rows.map((e) => e.id));
        localTimes(table);
      }
      status.textContent = "Following: " + rows.length + " new at " + new Date().toLocaleTimeString();
    } catch (err) {
      status.textContent = "Follow failed: " + err.message;
    }
  }
  button.addEventListener("click", () => {
    const on = button.getAttribute("aria-pressed") !== "true";
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Stop following" : "Follow live";
    if (on) {
      poll();
      timer = setInterval(poll, 2000);
    } else {
      clearInterval(timer);
      status.textContent = "Stopped.";
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  tidyForms();
  clickableRows(document.body);
  follow();
});
