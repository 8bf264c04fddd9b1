// The service's state from /health (lanes, queue, workers) and /v1/models, every few seconds.

import { getJSON, request } from "./api.js";
import { $ } from "./ui.js";

export const REFRESH_MS = 3000;

function cell(row, value, className) {
  const td = document.createElement("td");
  td.textContent = value === undefined || value === null ? "" : String(value);
  if (className) td.className = className;
  row.append(td);
}

function fillTable(id, rows, columns) {
  const table = $(id);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    for (const column of columns) column(tr, item);
    body.append(tr);
  }
  table.hidden = rows.length === 0;
}

function facts(pairs) {
  const dl = $("service");
  dl.replaceChildren();
  for (const [name, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    dl.append(dt, dd);
  }
}

function uptime(seconds) {
  if (!(seconds >= 0)) return "";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min` : `${Math.floor(seconds)} s`;
}

export function showHealth(body) {
  if (!("lanes" in body)) {
    // Without the key /health says only its status (docs/api.md, "Authentication").
    facts([["status", body.status], ["detail", body.error ? body.error.message : "type the API key to see the lanes"]]);
    fillTable("lanes", [], []);
    return;
  }
  const workers = body.workers || {};
  const live = body.live || {};
  facts([
    ["status", body.error ? `${body.status}: ${body.error.message}` : body.status],
    ["version", body.version],
    ["engine", `${body.engine} on ${body.device}${body.compute_type ? ` (${body.compute_type})` : ""}`],
    ["default model", body.model],
    ["queue", `${body.queue} waiting, ${body.running} running` +
              (body.windowed ? `, ${body.windowed} long file${body.windowed === 1 ? "" : "s"} in windows` : "")],
    ["workers", `${body.hot_slots} hot slot${body.hot_slots === 1 ? "" : "s"}, ${workers.cold || 0} cold` +
                `${body.loading ? ` (${body.loading} loading)` : ""}`],
    ["live sessions", live.sessions !== undefined ? `${live.sessions} of ${live.max_sessions ?? "?"}` : ""],
    ["served", body.served],
    ["uptime", uptime(body.uptime)],
  ]);
  fillTable("lanes", body.lanes || [], [
    (tr, l) => cell(tr, l.id), (tr, l) => cell(tr, l.kind), (tr, l) => cell(tr, l.model),
    (tr, l) => cell(tr, l.state, l.state === "idle" ? "" : "busy"), (tr, l) => cell(tr, l.served),
    (tr, l) => cell(tr, l.pid),
  ]);
}

export function showModels(models) {
  fillTable("models", models, [
    (tr, m) => cell(tr, m.id), (tr, m) => cell(tr, m.loaded ? "yes" : "no"),
    (tr, m) => cell(tr, m.multilingual ? "many" : "English"),
    (tr, m) => cell(tr, m.alias_of ? `= ${m.alias_of}` : m.default ? "default" : ""),
  ]);
  // The model choice keeps what the person picked; whisper-1 (the default model) otherwise.
  const select = $("model");
  const ids = models.map((m) => m.id);
  if (select.options.length === ids.length && [...select.options].every((o, i) => o.value === ids[i])) return;
  const chosen = select.value || "whisper-1";
  select.replaceChildren(...models.map((m) => {
    const label = m.alias_of ? `${m.id} (${m.alias_of})` : m.id;
    return new Option(label, m.id, false, m.id === chosen);
  }));
}

export async function fetchModels() {
  const list = await getJSON("/v1/models");
  showModels(list.data || []);
}

export async function fetchHealth() {
  const response = await request("/health", { ok: (s) => s === 503 }); // 503 still says why
  showHealth(await response.json());
}

// One refresh of both; an error here shows in the panel (the alert is for what the person did).
export async function refresh() {
  try {
    await Promise.all([fetchHealth(), fetchModels()]);
  } catch (err) {
    facts([["status", "unknown"], ["detail", err.message]]);
  }
}
