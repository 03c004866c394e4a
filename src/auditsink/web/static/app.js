// auditsink web UI: local times, the viewer's zone for typed times, tidy URLs, clickable rows,
// and lossless live follow. No build step; every page works without it.
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

// The viewer's zone, so that a time typed without one ("2026-11-26 09:00") is read in it:
// its IANA name, and the current offset for a server that has no zone data.
function zoneInputs() {
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  const offset = sign + String(Math.floor(abs / 60)).padStart(2, "0") + ":" + String(abs % 60).padStart(2, "0");
  for (const form of document.querySelectorAll("form.range")) {
    const tz = form.querySelector("input.tz");
    const tzo = form.querySelector("input.tzo");
    if (!tz) continue;
    const mine = () => { tz.value = name || offset; if (tzo) tzo.value = offset; };
    if (!tz.value) mine();
    // A time typed here is typed in this viewer's zone, whoever shared the link.
    for (const input of form.querySelectorAll("input[name=since], input[name=until]")) {
      input.addEventListener("input", mine);
    }
  }
}

// Leave untouched fields out of the query string, so shared links stay short; a zone is
// sent only with a typed time.
function tidyForms() {
  for (const form of document.querySelectorAll("form[method=get]")) {
    form.addEventListener("submit", () => {
      const typed = [...form.querySelectorAll("input[name=since], input[name=until]")].some((i) => i.value !== "");
      for (const input of form.querySelectorAll("input, select")) {
        if (!input.name) continue;
        if (input.value === "" || (!typed && (input.name === "tz" || input.name === "tzo"))) input.disabled = true;
      }
      setTimeout(() => form.querySelectorAll(":disabled").forEach((i) => { i.disabled = false; }), 0);
    });
  }
}

// The header's cluster selector applies as soon as a cluster is chosen.
function clusterPicker() {
  const select = document.getElementById("cluster-pick");
  if (select) select.addEventListener("change", () => select.form.requestSubmit());
}

// The explorer's field form stays open or closed as the viewer left it.
function fieldsBox() {
  const box = document.getElementById("fields-box");
  if (!box) return;
  try {
    if (localStorage.getItem("auditsink.fields-open") === "1") box.open = true;
    box.addEventListener("toggle", () => localStorage.setItem("auditsink.fields-open", box.open ? "1" : "0"));
  } catch (err) { /* storage disabled: the box just starts closed */ }
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

function link(text, href) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function cell(...children) {
  const td = document.createElement("td");
  for (const child of children) td.append(child);
  return td;
}

// The same row as the server renders (textContent only: event data is never parsed as HTML).
function eventRow(e) {
  const tr = document.createElement("tr");
  tr.dataset.id = e.id;
  tr.dataset.time = e.time_us;
  tr.dataset.href = e.request_url;
  const when = document.createElement("time");
  when.setAttribute("datetime", e.time);
  when.textContent = e.time;
  const who = e.user_url ? [link(e.user, e.user_url)] : ["(unauthenticated)"];
  if (e.impersonated) who.push(" as ", link(e.impersonated, e.impersonated_url));
  const place = (e.namespace ? e.namespace + "/" : "") + e.name;
  tr.append(cell(link("", e.request_url)), cell(e.cluster || "default"), cell(...who),
            cell(e.verb), cell(e.resource || e.uri), cell(e.object_url ? link(place, e.object_url) : place),
            cell(e.code ? String(e.code) : "–"), cell(e.stage));
  tr.firstChild.firstChild.appendChild(when);
  return tr;
}

// Rows are in time order, newest first: does (time, id) a sort before (time, id) b?
function newer(a, b) {
  return a.time > b.time || (a.time === b.time && a.id > b.id);
}

// Follow mode: ask the JSON twin for what was committed after a log position, and ask again
// at once while it says there is more, so a burst of thousands arrives whole. Each event is
// placed by its time, so a late batch lands where it belongs, not on top.
const MAX_ROWS = 20000;
const FLASH_AT_MOST = 100; // a burst is not animated row by row: it would freeze the page
function follow() {
  const button = document.getElementById("follow");
  const tbody = document.querySelector("#event-table tbody");
  if (!button || !tbody) return;
  const status = document.getElementById("follow-status");
  const hits = document.getElementById("hits");
  const url = new URL(button.dataset.url, window.location.href);
  const seen = new Set();
  // The rows on screen, newest first, kept beside the DOM so a merge never searches it.
  let shown = [];
  for (const tr of tbody.querySelectorAll("tr[data-id]")) {
    seen.add(Number(tr.dataset.id));
    shown.push({time: Number(tr.dataset.time), id: Number(tr.dataset.id), el: tr});
  }
  let on = false;
  let timer = null;
  let received = 0;
  let chain = 0; // a restarted follow starts a new chain of polls; an old one then ends
  let pending = []; // read, not yet placed
  let placed = 0;

  function add(rows) {
    const fresh = rows.filter((e) => !seen.has(e.id)).map((e) => {
      seen.add(e.id);
      const el = eventRow(e);
      localTimes(el);
      return {time: e.time_us, id: e.id, el, fresh: true};
    });
    if (!fresh.length) return 0;
    const flash = fresh.length <= FLASH_AT_MOST;
    fresh.sort((a, b) => (newer(a, b) ? -1 : 1));
    tbody.querySelector("tr.empty")?.remove();
    // Merge the two sorted lists, then place each new row before the row that follows it.
    const merged = [];
    let i = 0;
    let j = 0;
    while (i < shown.length || j < fresh.length) {
      if (j < fresh.length && (i >= shown.length || newer(fresh[j], shown[i]))) merged.push(fresh[j++]);
      else merged.push(shown[i++]);
    }
    // Consecutive new rows go in as one fragment: one change of the table per run, not per
    // row (each change of a big table costs the browser, its accessibility tree above all).
    let next = null;
    let run = null;
    for (let k = merged.length - 1; k >= -1; k--) {
      const entry = k >= 0 ? merged[k] : null;
      if (entry && entry.fresh) {
        if (flash) entry.el.classList.add("new");
        if (!run) run = document.createDocumentFragment();
        run.prepend(entry.el);
        entry.fresh = false;
        continue;
      }
      if (run) {
        tbody.insertBefore(run, next);
        run = null;
      }
      if (entry) next = entry.el;
    }
    while (merged.length > MAX_ROWS) merged.pop().el.remove(); // the newest stay on screen
    shown = merged;
    return fresh.length;
  }

  async function poll(mine) {
    timer = null;
    if (!on || mine !== chain) return;
    let again = 2000;
    try {
      const answer = await fetch(url, {headers: {Accept: "application/json"}});
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const page = await answer.json();
      pending.push(...page.events);
      // During a burst the next poll goes out at once, and the rows are placed once it is
      // read (or every few seconds of a long one): laying out a table of thousands of rows
      // is what takes the time, so it is done as few times as possible.
      let added = 0;
      if (!page.follow.more || performance.now() - placed >= 3000) {
        added = add(pending);
        pending = [];
        placed = performance.now();
      }
      received += added;
      if (hits && added) hits.textContent = (Number(hits.textContent.replace(/\D/g, "")) + added).toLocaleString("en");
      url.searchParams.set("after_id", String(page.follow.after_id));
      button.dataset.position = String(page.follow.after_id);
      if (page.follow.more) again = 0;
      status.textContent = "Following: " + received.toLocaleString("en") + " new since you started, last checked " + new Date().toLocaleTimeString();
    } catch (err) {
      status.textContent = "Follow failed (" + err.message + "), retrying";
      again = 5000;
    }
    if (on && mine === chain) timer = setTimeout(poll, again, mine);
  }

  button.addEventListener("click", () => {
    on = button.getAttribute("aria-pressed") !== "true";
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Stop following" : "Follow live";
    if (on) {
      tbody.parentElement.classList.add("following");
      chain += 1;
      poll(chain);
    } else {
      if (timer) clearTimeout(timer);
      status.textContent = "Stopped after " + received.toLocaleString("en") + " new.";
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  zoneInputs();
  tidyForms();
  clusterPicker();
  fieldsBox();
  clickableRows(document.body);
  follow();
});
