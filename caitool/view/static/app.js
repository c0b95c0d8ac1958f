// caitool view: the page. Model output is data, never markup: every string from a record reaches the DOM
// through textContent or createTextNode (helper `el`), never innerHTML. With the server, data comes from
// the JSON API (caitool/view/server.py); in an exported report.html it is embedded in #caitool-data and
// `localApi` answers the same questions in the page.
"use strict";

const EMBEDDED = document.getElementById("caitool-data");
const LOCAL = EMBEDDED ? JSON.parse(EMBEDDED.textContent) : null;
const PAGE = 100;
const SVGNS = "http://www.w3.org/2000/svg";
const state = { file: 0, offset: 0, selected: null, files: [] };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function fmt(p) {
  return typeof p === "number" ? p.toFixed(3) : p === null || p === undefined ? "" : String(p);
}

function textOf(value) {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.map((m) => (m && typeof m === "object" ? m.content : String(m))).join("\n");
  return value === null || value === undefined ? "" : JSON.stringify(value, null, 2);
}

// ---- data access ------------------------------------------------------------------------------------

async function api(path, params) {
  if (LOCAL) return localApi(path, params || {});
  const url = new URL(path, window.location.href);
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, v);
  const res = await fetch(url);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

function histogram(values) {
  const counts = new Array(20).fill(0);
  let seen = false;
  for (const p of values) {
    if (typeof p !== "number") continue;
    seen = true;
    counts[Math.min(19, Math.max(0, Math.floor(p * 20)))] += 1;
  }
  return seen ? counts : null;
}

function localApi(path, params) {
  if (path === "/api/files") return LOCAL.files.map((f) => f.info);
  const f = LOCAL.files[Number(params.file || 0)];
  if (path === "/api/report") return { kind: f.info.kind, report: f.report };
  if (path === "/api/row") return f.rows[Number(params.n)];
  const S = f.summaries;
  if (path === "/api/facets") {
    const kinds = {}, principles = {}, flags = {};
    for (const s of S) {
      kinds[s.kind] = (kinds[s.kind] || 0) + 1;
      for (const p of new Set(s.principles)) principles[p] = (principles[p] || 0) + 1;
      for (const x of s.flags) flags[x] = (flags[x] || 0) + 1;
    }
    return { total: S.length, kinds, principles, flags, histogram: histogram(S.map((s) => s.p)) };
  }
  const q = (params.q || "").toLowerCase();
  const pmin = params.pmin === "" || params.pmin === undefined ? null : Number(params.pmin);
  const pmax = params.pmax === "" || params.pmax === undefined ? null : Number(params.pmax);
  let matched = [];
  S.forEach((s, n) => {
    if (params.principle && !s.principles.includes(params.principle)) return;
    if (params.flag && !s.flags.includes(params.flag)) return;
    if (params.kind && s.kind !== params.kind) return;
    if (params.errors && !(s.kind === "error" || s.kind === "bad-json")) return;
    if (pmin !== null && (typeof s.p !== "number" || s.p < pmin)) return;
    if (pmax !== null && (typeof s.p !== "number" || s.p > pmax)) return;
    if (q && !JSON.stringify(f.rows[n]).toLowerCase().includes(q)) return;
    matched.push(n);
  });
  const sort = params.sort || "order";
  if (sort === "id") matched.sort((a, b) => (S[a].id < S[b].id ? -1 : S[a].id > S[b].id ? 1 : 0));
  if (sort === "p" || sort === "-p") {
    const sign = sort === "-p" ? -1 : 1;
    const key = (n) => (typeof S[n].p === "number" ? sign * S[n].p : Infinity);
    matched.sort((a, b) => key(a) - key(b));
  }
  const offset = Number(params.offset || 0);
  const rows = matched.slice(offset, offset + Number(params.limit || PAGE)).map((n) => ({ n, ...S[n] }));
  return { total: S.length, matched: matched.length, rows, histogram: histogram(matched.map((n) => S[n].p)), ready: true };
}

// ---- list and filters -------------------------------------------------------------------------------

function filterParams() {
  return {
    file: state.file,
    kind: $("f-kind").value,
    principle: $("f-principle").value,
    flag: $("f-flag").value,
    pmin: $("f-pmin").value,
    pmax: $("f-pmax").value,
    errors: $("f-errors").checked ? "1" : "",
    q: $("f-q").value.trim(),
    sort: $("f-sort").value,
  };
}

function fillSelect(select, counts) {
  const keep = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const [name, n] of Object.entries(counts || {})) {
    select.appendChild(el("option", { value: name }, `${name} (${n})`));
  }
  select.value = keep;
}

async function loadFacets() {
  const facets = await api("/api/facets", { file: state.file });
  fillSelect($("f-kind"), facets.kinds);
  fillSelect($("f-principle"), facets.principles);
  fillSelect($("f-flag"), facets.flags);
  const kinds = Object.entries(facets.kinds).map(([k, n]) => `${n} ${k}`).join(", ");
  $("facet-note").textContent = `${facets.total} rows: ${kinds}`;
  if (!state.filtered) drawHistogram(facets.histogram);
}

function drawHistogram(counts) {
  const box = $("hist");
  clear(box);
  if (!counts) {
    box.appendChild(svg("text", { x: 4, y: 40 }, "no p values"));
    return;
  }
  const max = Math.max(1, ...counts);
  const w = 220 / counts.length;
  counts.forEach((c, i) => {
    const h = Math.round((c / max) * 70);
    const bar = svg("rect", { x: i * w + 1, y: 75 - h, width: w - 2, height: h, fill: "#5c6bc0", class: "bar" });
    bar.appendChild(svg("title", {}, `p ${(i / 20).toFixed(2)}–${((i + 1) / 20).toFixed(2)}: ${c}`));
    bar.addEventListener("click", () => {
      $("f-pmin").value = (i / 20).toFixed(2);
      $("f-pmax").value = ((i + 1) / 20).toFixed(2);
      refresh(true);
    });
    box.appendChild(bar);
  });
  box.appendChild(svg("text", { x: 0, y: 88 }, "0"));
  box.appendChild(svg("text", { x: 104, y: 88 }, "0.5"));
  box.appendChild(svg("text", { x: 212, y: 88 }, "1"));
}

async function refresh(resetOffset) {
  if (resetOffset) state.offset = 0;
  const params = { ...filterParams(), offset: state.offset, limit: PAGE };
  state.filtered = Boolean(params.kind || params.principle || params.flag || params.pmin || params.pmax || params.errors || params.q);
  const page = await api("/api/rows", params);
  const body = $("list").tBodies[0];
  clear(body);
  for (const r of page.rows) {
    const tr = el(
      "tr",
      { class: "row", "data-n": String(r.n) },
      el("td", {}, r.n + 1),
      el("td", {}, r.id),
      el("td", {}, r.kind),
      el("td", {}, r.principles.join(", ")),
      el("td", {}, r.flags.join(", ")),
      el("td", {}, fmt(r.p)),
      el("td", { class: "preview" }, r.preview),
    );
    tr.addEventListener("click", () => showRow(r.n));
    body.appendChild(tr);
  }
  const filtered = page.matched !== page.total;
  $("counts").textContent = filtered ? `${page.matched} of ${page.total} rows` : `${page.total} rows`;
  const last = Math.min(page.matched, state.offset + page.rows.length);
  $("pageinfo").textContent = page.matched ? `${state.offset + 1}–${last} of ${page.matched}` : "no rows";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = last >= page.matched;
  if (page.histogram !== null && page.histogram !== undefined) drawHistogram(page.histogram);
  if (state.selected === null && page.rows.length) showRow(page.rows[0].n);
}

// ---- one record -------------------------------------------------------------------------------------

// A word with the spaces after it: a replaced word then reads "old new", not "oldnew".
function words(text) {
  return text.match(/\s+|\S+\s*/g) || [];
}

// Word-level diff (longest common subsequence): [op, text] with op "=", "-" or "+".
function diffWords(before, after) {
  const a = words(before), b = words(after);
  if (a.length * b.length > 4e6) return [["-", before], ["+", after]];
  const n = a.length, m = b.length;
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  }
  const out = [];
  const push = (op, t) => (out.length && out[out.length - 1][0] === op ? (out[out.length - 1][1] += t) : out.push([op, t]));
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { push("=", a[i]); i++; j++; }
    else if (L[i + 1][j] >= L[i][j + 1]) push("-", a[i++]);
    else push("+", b[j++]);
  }
  while (i < n) push("-", a[i++]);
  while (j < m) push("+", b[j++]);
  return out;
}

function diffView(before, after) {
  const box = el("div", { class: "text diff" });
  for (const [op, t] of diffWords(before, after)) {
    box.appendChild(op === "=" ? document.createTextNode(t) : el(op === "+" ? "ins" : "del", {}, t));
  }
  return box;
}

function block(title, text, cls) {
  return [el("h4", {}, title), el("div", { class: "text " + (cls || "") }, text)];
}

function badges(flags) {
  const span = el("span", { class: "flags" });
  for (const f of flags || []) span.appendChild(el("span", { class: "badge" }, f));
  return span;
}

function kv(obj) {
  const t = el("table", { class: "kv" });
  for (const [k, v] of Object.entries(obj || {})) {
    t.appendChild(el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v))));
  }
  return t;
}

function conversation(prompt) {
  const box = el("div", { class: "prompt" });
  const turns = Array.isArray(prompt) ? prompt : [{ role: "user", content: textOf(prompt) }];
  for (const m of turns) box.appendChild(el("div", { class: "text turn" }, `${m.role}: ${textOf(m.content)}`));
  return box;
}

function renderTrace(rec) {
  const out = [el("h3", {}, "Prompt"), conversation(rec.prompt), ...block("Initial response", textOf(rec.initial_response), "initial")];
  let previous = textOf(rec.initial_response);
  for (const r of rec.rounds || []) {
    const round = el("div", { class: "round", "data-round": String(r.round) });
    round.appendChild(el("h3", {}, `Round ${r.round} · ${r.principle_id}`, " ", badges(r.flags)));
    if (r.critique_request) round.appendChild(el("p", { class: "request" }, r.critique_request));
    if (r.critique) round.append(...block("Critique", r.critique, "critique"));
    round.appendChild(el("p", { class: "request" }, r.revision_request || ""));
    round.appendChild(el("h4", {}, "Revision (changes against the previous response)"));
    round.appendChild(diffView(previous, r.revision || ""));
    if (r.usage) round.appendChild(el("p", { class: "usage" }, `usage: ${r.usage.input_tokens} in, ${r.usage.output_tokens} out, ${r.usage.calls} calls`));
    if (r.revision) previous = r.revision;
    out.push(round);
  }
  out.push(...block("Final response", textOf(rec.final_response), "final"));
  return out;
}

function renderLabel(rec) {
  const meta = rec.caitool || {};
  const chosenIs = meta.chosen_is ? ` (${meta.chosen_is.toUpperCase()})` : "";
  const rejectedIs = meta.chosen_is ? ` (${meta.chosen_is === "a" ? "B" : "A"})` : "";
  const out = [el("h3", {}, "Prompt"), conversation(rec.prompt)];
  out.push(el("p", {}, `p_chosen ${fmt(rec.p_chosen)} · label source ${meta.label_source || "?"} · principles ${(meta.principle_ids || []).join(", ")}`));
  out.push(
    el(
      "div",
      { class: "sidebyside" },
      el("div", { class: "chosen" }, el("h3", {}, `chosen${chosenIs} · p ${fmt(rec.p_chosen)}`), el("div", { class: "text" }, textOf(rec.chosen))),
      el("div", { class: "rejected" }, el("h3", {}, `rejected${rejectedIs} · p ${fmt(typeof rec.p_chosen === "number" ? 1 - rec.p_chosen : null)}`), el("div", { class: "text" }, textOf(rec.rejected))),
    ),
  );
  const qs = meta.questions || [];
  if (qs.length) {
    const t = el("table", { class: "kv questions" }, el("tr", {}, ...["principle", "order", "P(A)", "A/B mass", "source"].map((h) => el("th", {}, h))));
    for (const q of qs) t.appendChild(el("tr", {}, el("td", {}, q.principle_id), el("td", {}, q.order), el("td", {}, fmt(q.p_a)), el("td", {}, fmt(q.ab_mass)), el("td", {}, q.source || "")));
    out.push(el("h4", {}, "Questions (P(A) in the input's order)"), t);
    for (const q of qs) for (const r of q.reasoning || []) out.push(...block(`reasoning (${q.principle_id}, ${q.order})`, r, "reasoning"));
  }
  if (meta.position_disagreement !== null && meta.position_disagreement !== undefined) out.push(el("p", {}, `position disagreement ${fmt(meta.position_disagreement)}`));
  return out;
}

function renderJudgment(rec) {
  const out = [el("h3", {}, "Prompt"), conversation(rec.prompt || "")];
  out.push(el("p", {}, `${rec.criterion || ""}: P(${rec.model_a} better than ${rec.model_b}) = ${fmt(rec.p_a)}`));
  if (rec.response_a !== undefined || rec.response_b !== undefined) {
    out.push(el("div", { class: "sidebyside" },
      el("div", {}, el("h3", {}, `A: ${rec.model_a}`), el("div", { class: "text" }, textOf(rec.response_a))),
      el("div", {}, el("h3", {}, `B: ${rec.model_b}`), el("div", { class: "text" }, textOf(rec.response_b)))));
  }
  return out;
}

function renderError(rec) {
  const out = [el("p", { class: "error" }, `${rec.where}: ${rec.error}`)];
  if (rec.status !== undefined) out.push(el("p", {}, `status ${rec.status}`));
  if (rec.hint) out.push(el("p", {}, `hint: ${rec.hint}`));
  if (rec.raw !== undefined) out.push(...block("raw", textOf(rec.raw)));
  return out;
}

async function showRow(n) {
  state.selected = n;
  for (const tr of document.querySelectorAll("#list tr.selected")) tr.classList.remove("selected");
  const tr = document.querySelector(`#list tr[data-n="${n}"]`);
  if (tr) tr.classList.add("selected");
  const row = await api("/api/row", { file: state.file, n });
  const box = $("detail");
  clear(box);
  box.appendChild(el("h2", {}, `${row.kind} ${row.record && row.record.id !== undefined ? row.record.id : ""}`));
  box.appendChild(el("p", { class: "meta" }, row.where || ""));
  const rec = row.record;
  const render = { trace: renderTrace, label: renderLabel, judgment: renderJudgment, error: renderError }[row.kind];
  if (row.kind === "bad-json") box.append(el("p", { class: "error" }, row.error), ...block("line", row.text));
  else if (render) box.append(...render(rec));
  else box.append(...block("record", JSON.stringify(rec, null, 2)));
  if (rec && rec.caitool && row.kind !== "row") {
    const { questions, ...meta } = rec.caitool;  // the questions have their own table above
    box.append(el("h4", {}, "caitool"), kv(meta));
  }
}

// ---- reports ----------------------------------------------------------------------------------------

function scale(lo, hi, a, b) {
  const span = hi - lo || 1;
  return (v) => a + ((v - lo) / span) * (b - a);
}

function axes(g, x0, y0, x1, y1, xlabel, ylabel) {
  g.appendChild(svg("line", { x1: x0, y1: y0, x2: x1, y2: y0, stroke: "#333" }));
  g.appendChild(svg("line", { x1: x0, y1: y0, x2: x0, y2: y1, stroke: "#333" }));
  g.appendChild(svg("text", { x: (x0 + x1) / 2 - 40, y: y0 + 35 }, xlabel));
  g.appendChild(svg("text", { x: 5, y: y1 - 10 }, ylabel));
}

function eloPlot(report) {
  const names = Object.keys(report.criteria);
  const xName = names.find((c) => /help/i.test(c)) || names[0];
  const yName = names.find((c) => c !== xName && /harm/i.test(c)) || names.find((c) => c !== xName);
  const box = el("div", { class: "elo" });
  const W = 560, H = 420, L = 70, B = 370, R = 530, T = 30;
  const plot = svg("svg", { width: W, height: H, id: "elo-plot" });
  const models = {};
  for (const c of names) for (const m of report.criteria[c].models) (models[m.model] = models[m.model] || {})[c] = m;
  if (yName) {
    // The paper's Fig. 2: harmlessness Elo against helpfulness Elo, one point per model.
    const xs = [], ys = [];
    for (const m of Object.values(models)) if (m[xName] && m[yName]) { xs.push(m[xName].ci_low, m[xName].ci_high); ys.push(m[yName].ci_low, m[yName].ci_high); }
    const sx = scale(Math.min(...xs), Math.max(...xs), L, R), sy = scale(Math.min(...ys), Math.max(...ys), B, T);
    axes(plot, L, B, R, T, `${xName} Elo`, `${yName} Elo`);
    for (const [name, m] of Object.entries(models)) {
      if (!m[xName] || !m[yName]) continue;
      const x = sx(m[xName].elo), y = sy(m[yName].elo);
      plot.appendChild(svg("line", { x1: sx(m[xName].ci_low), y1: y, x2: sx(m[xName].ci_high), y2: y, stroke: "#999" }));
      plot.appendChild(svg("line", { x1: x, y1: sy(m[yName].ci_low), x2: x, y2: sy(m[yName].ci_high), stroke: "#999" }));
      plot.appendChild(svg("circle", { cx: x, cy: y, r: 5, fill: "#3949ab", class: "point" }));
      plot.appendChild(svg("text", { x: x + 7, y: y - 7 }, name));
    }
  } else {
    const ms = report.criteria[xName].models;
    const lo = Math.min(...ms.map((m) => m.ci_low)), hi = Math.max(...ms.map((m) => m.ci_high));
    const sx = scale(lo, hi, L + 80, R);
    axes(plot, L + 80, B, R, T, `${xName} Elo`, "");
    ms.forEach((m, i) => {
      const y = T + 20 + i * 30;
      plot.appendChild(svg("text", { x: 5, y: y + 4 }, m.model));
      plot.appendChild(svg("line", { x1: sx(m.ci_low), y1: y, x2: sx(m.ci_high), y2: y, stroke: "#999" }));
      plot.appendChild(svg("circle", { cx: sx(m.elo), cy: y, r: 5, fill: "#3949ab", class: "point" }));
    });
  }
  box.appendChild(plot);
  for (const c of names) {
    box.appendChild(el("h3", {}, c));
    const t = el("table", { class: "kv" }, el("tr", {}, ...["model", "Elo", "CI", "comparisons", "win rate"].map((h) => el("th", {}, h))));
    for (const m of report.criteria[c].models) t.appendChild(el("tr", {}, el("td", {}, m.model), el("td", {}, m.elo), el("td", {}, `${m.ci_low} – ${m.ci_high}`), el("td", {}, m.comparisons), el("td", {}, fmt(m.win_rate))));
    box.appendChild(t);
  }
  return box;
}

function reliabilityDiagram(report) {
  const cal = report.calibration;
  const box = el("div", { class: "calibration" });
  const plot = svg("svg", { width: 420, height: 420, id: "calibration-plot" });
  const L = 60, B = 370, R = 400, T = 20;
  const sx = scale(0.5, 1, L, R), sy = scale(0, 1, B, T);
  axes(plot, L, B, R, T, "confidence (labeler)", "accuracy");
  plot.appendChild(svg("line", { x1: sx(0.5), y1: sy(0.5), x2: sx(1), y2: sy(1), stroke: "#aaa", "stroke-dasharray": "4 4" }));
  const maxCount = Math.max(1, ...cal.bins.map((b) => b.count));
  for (const b of cal.bins) {
    if (!b.count) continue;
    plot.appendChild(svg("circle", { cx: sx(b.confidence), cy: sy(b.accuracy), r: 3 + 7 * Math.sqrt(b.count / maxCount), fill: "#00897b", class: "point" }));
  }
  box.appendChild(plot);
  const scalars = {};
  for (const [k, v] of Object.entries(report)) if (typeof v !== "object" || v === null) scalars[k] = v;
  scalars.ece = cal.ece;
  box.appendChild(kv(scalars));
  box.appendChild(el("details", {}, el("summary", {}, "whole report"), el("div", { class: "text" }, JSON.stringify(report, null, 2))));
  return box;
}

async function showReport() {
  const { kind, report } = await api("/api/report", { file: state.file });
  const box = $("report");
  clear(box);
  box.appendChild(el("h2", {}, kind));
  if (kind === "elo-report") box.appendChild(eloPlot(report));
  else if (kind === "eval-labeler-report") box.appendChild(reliabilityDiagram(report));
  else box.appendChild(el("div", { class: "text" }, JSON.stringify(report, null, 2)));
  $("counts").textContent = kind;
}

// ---- wiring -----------------------------------------------------------------------------------------

function clearFilters() {
  for (const id of ["f-kind", "f-principle", "f-flag", "f-pmin", "f-pmax", "f-q"]) $(id).value = "";
  $("f-errors").checked = false;
  $("f-sort").value = "order";
}

async function openFile(i) {
  clearFilters();  // another file has other principles and flags
  state.file = i;
  state.offset = 0;
  state.selected = null;
  clear($("detail"));
  const info = state.files[i];
  const isReport = info.kind !== "jsonl";
  document.querySelector("main").classList.toggle("report-mode", isReport);
  $("report").hidden = !isReport;
  if (isReport) return showReport();
  await refresh(true);
  loadFacets();
}

async function main() {
  state.files = await api("/api/files");
  state.files.forEach((f, i) => $("file").appendChild(el("option", { value: String(i) }, `${f.path} (${f.kind === "jsonl" ? f.rows + " rows" : f.kind})`)));
  $("file").addEventListener("change", () => openFile(Number($("file").value)));
  for (const id of ["f-kind", "f-principle", "f-flag", "f-errors", "f-sort", "f-pmin", "f-pmax"]) $(id).addEventListener("change", () => refresh(true));
  let timer = null;
  $("f-q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => refresh(true), 250); });
  $("f-clear").addEventListener("click", () => {
    clearFilters();
    refresh(true);
  });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(false); });
  $("next").addEventListener("click", () => { state.offset += PAGE; refresh(false); });
  await openFile(0);
  document.body.setAttribute("data-ready", "1");
}

main().catch((err) => {
  document.body.appendChild(el("p", { class: "error" }, `caitool view: ${err.message}`));
});
