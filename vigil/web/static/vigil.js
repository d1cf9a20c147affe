// The review page's only script (served as /static/vigil.js; the pages' CSP allows no inline script).
"use strict";

// Times are sent in UTC; show them in the viewer's zone.
for (const t of document.querySelectorAll("time[datetime]")) {
  const d = new Date(t.getAttribute("datetime"));
  if (!isNaN(d)) { t.textContent = d.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "medium"}); t.title = t.getAttribute("datetime"); }
}

// One-click verdicts: post the form in the background and mark the chosen button.
for (const form of document.querySelectorAll("form.verdict")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    data.set("verdict", event.submitter.value);
    const response = await fetch(form.action, {method: "POST", body: data, headers: {Accept: "application/json"}});
    if (!response.ok) { alert(await response.text()); return; }
    for (const b of form.querySelectorAll("button")) b.classList.toggle("on", b === event.submitter);
    form.dataset.verdict = event.submitter.value;
  });
}

// Timeline: datetime-local inputs are in the viewer's zone; the query carries UTC.
const filters = document.getElementById("filters");
if (filters) {
  for (const input of filters.querySelectorAll("input[data-utc]")) {
    const hidden = filters.querySelector(`input[name=${input.dataset.utc}]`);
    if (hidden.value) { const d = new Date(hidden.value); input.value = new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); }
    input.addEventListener("change", () => { hidden.value = input.value ? new Date(input.value).toISOString() : ""; });
  }
}

// Media page: a window's row or thumbnail plays the clip from the window's start.
const player = document.getElementById("player");
function seek(start) {
  if (!player) return;
  const go = () => { player.currentTime = start; player.play().catch(() => {}); };
  player.readyState >= 1 ? go() : player.addEventListener("loadedmetadata", go, {once: true});
}
for (const row of document.querySelectorAll("tr.window")) {
  row.addEventListener("click", () => {
    for (const r of document.querySelectorAll("tr.window.playing")) r.classList.remove("playing");
    row.classList.add("playing");
    seek(parseFloat(row.dataset.start));
  });
}
for (const img of document.querySelectorAll("img.seek")) img.addEventListener("click", () => seek(parseFloat(img.dataset.start)));
const fromHash = /#t=([\d.]+)/.exec(location.hash);
if (fromHash && player) seek(parseFloat(fromHash[1]));
