// The review page's live part: server-sent events from /events move the progress bars, swap in each image or
// clip as it lands, and show the job and lock state; when a job or a render ends the page reloads with its artifacts.
"use strict";

const LANDED_MAX = 12;
// A job of ours or a render holding the lock: when it ends, the page reloads with what it made.
let wasBusy = ["running", "locked"].some((k) => document.getElementById("status").dataset[k] === "yes");

function bar(stage) {
  let row = document.querySelector(`#progress [data-stage="${CSS.escape(stage)}"]`);
  if (!row) {
    row = document.createElement("div");
    row.className = "stage";
    row.dataset.stage = stage;
    row.innerHTML = "<label></label><progress></progress><span></span>";
    row.querySelector("label").textContent = stage;
    document.getElementById("progress").appendChild(row);
  }
  return row;
}

function landed(rel) {
  const url = `/run/${rel}?v=${Date.now()}`;
  for (const el of document.querySelectorAll("[data-rel]")) {
    if (el.dataset.rel !== rel) continue;
    el.src = url;
    if (el.hidden) {  // a storyboard tile drawn after the page was loaded
      el.hidden = false;
      el.parentElement.querySelector(".pending")?.remove();
    }
  }
  if (!rel.endsWith(".png")) return;
  const section = document.getElementById("landed");
  const strip = section.querySelector(".strip");
  const img = document.createElement("img");
  img.src = url;
  img.alt = rel;
  img.title = rel;
  img.className = "thumb";
  strip.prepend(img);
  while (strip.children.length > LANDED_MAX) strip.lastChild.remove();
  section.hidden = false;
}

function status(state) {
  const el = document.getElementById("status");
  const job = state.job;
  const running = Boolean(job && job.running);
  if (running) el.textContent = `job running: ${job.name} (pid ${job.pid})`;
  else if (state.locked_by) el.textContent = `locked by pid ${state.locked_by.pid} on ${state.locked_by.host}: actions wait for it`;
  else if (job) el.textContent = `last job: ${job.name}, ` + (job.exit_code === 0 ? "finished" : `failed (exit ${job.exit_code}) ${job.message}`);
  else el.textContent = "idle";
  el.dataset.running = running ? "yes" : "no";
  el.dataset.locked = state.locked_by ? "yes" : "no";
  for (const button of document.querySelectorAll("button.action")) button.disabled = running || Boolean(state.locked_by);
  const busy = running || Boolean(state.locked_by);
  if (wasBusy && !busy) window.location.reload();
  wasBusy = busy;
}

const events = new EventSource("/events");
events.addEventListener("progress", (e) => {
  const d = JSON.parse(e.data);
  const row = bar(d.stage);
  const meter = row.querySelector("progress");
  meter.max = Math.max(d.total, 1);
  meter.value = d.done;
  row.querySelector("span").textContent = `${d.done}/${d.total}`;
});
events.addEventListener("step", (e) => {
  for (const rel of JSON.parse(e.data).outputs || []) landed(rel);
});
events.addEventListener("status", (e) => status(JSON.parse(e.data)));
