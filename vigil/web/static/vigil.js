// The review page's one script (served as a file: the pages run under a CSP without inline scripts).
"use strict";

// Times are sent in UTC; show them in the viewer's zone.
for (const t of document.querySelectorAll("time[datetime]")) {
  const d = new Date(t.getAttribute("datetime"));
  if (!isNaN(d)) { t.textContent = d.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "medium"}); t.title = t.getAttribute("datetime"); }
}

// One-click verdicts: post the form in the background and mark the chosen button.
async function sendVerdict(form, button) {
  const data = new FormData(form);
  data.set("verdict", button.value);
  const response = await fetch(form.action, {method: "POST", body: data, headers: {Accept: "application/json"}});
  if (!response.ok) { alert(await response.text()); return false; }
  for (const b of form.querySelectorAll("button")) b.classList.toggle("on", b === button);
  form.dataset.verdict = button.value;
  return true;
}
for (const form of document.querySelectorAll("form.verdict")) {
  form.addEventListener("submit", (event) => { event.preventDefault(); sendVerdict(form, event.submitter); });
}

// Timeline filters: datetime-local inputs are in the viewer's zone, the query carries UTC. On a phone the
// filters fold away (their summary names the ones set).
const filters = document.getElementById("filters");
if (filters) {
  for (const input of filters.querySelectorAll("input[data-utc]")) {
    const hidden = filters.querySelector(`input[name=${input.dataset.utc}]`);
    if (hidden.value) { const d = new Date(hidden.value); input.value = new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); }
    input.addEventListener("change", () => { hidden.value = input.value ? new Date(input.value).toISOString() : ""; });
  }
  const box = filters.closest("details");
  if (box && window.matchMedia("(max-width: 720px)").matches) box.open = false;
}

// Media page: click a window's row or a thumbnail to play from it; #t=SECONDS does the same.
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
if (fromHash) seek(parseFloat(fromHash[1]));

// Keyboard triage, as review tools offer it: j/k next/previous item, y or r: right, n or w: wrong (then on
// to the next), o or Enter: open the item's file.
const items = [...document.querySelectorAll("[data-triage]")];
let current = -1;
function select(index) {
  if (!items.length) return;
  if (current >= 0) items[current].classList.remove("selected");
  current = Math.max(0, Math.min(items.length - 1, index));
  items[current].classList.add("selected");
  items[current].scrollIntoView({block: "nearest"});
}
async function judge(verdict) {
  if (current < 0) return;
  const form = items[current].querySelector("form.verdict");
  const button = form && form.querySelector(`button[value=${verdict}]`);
  if (button && await sendVerdict(form, button)) select(current + 1);
}
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.closest("input, select, textarea")) return;
  const key = event.key.toLowerCase();
  if (key === "j") select(current + 1);
  else if (key === "k") select(current < 0 ? 0 : current - 1);
  else if (key === "y" || key === "r") judge("right");
  else if (key === "n" || key === "w") judge("wrong");
  else if ((key === "o" || (key === "enter" && !event.target.closest("a, button"))) && current >= 0) {
    const link = items[current].querySelector("a[data-open]");
    if (link) location.href = link.href;
  } else return;
  event.preventDefault();
});
