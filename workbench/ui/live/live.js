// The Dashboard's live view (see workbench/ui/live_view.py): charts, log tail and events of one run, following it
// with one small poll a second. Streamlit's component protocol by hand: componentReady, render, setFrameHeight.
"use strict";

const QUIET_POLLS = 10; // after this many polls with nothing new, poll half as often
const NO_STEP = -Number.MAX_SAFE_INTEGER;

let args = null;
let argsJson = "";
let vegaConfig = {};
let charts = new Map(); // chart id -> Chart
let domain = null;
let logSize = -1;
let lastEvent = -1;
let timer = null;
let quiet = 0;
let generation = 0; // a render or a run change makes older polls' answers stale
let inflight = false;
let again = false;
let statusJson = "";
let asked = null; // the plan token (or "ended") the view last asked the page to rerun for
let drawnAt = 0; // when the page last sent a plan

// Charts off screen are neither built nor redrawn: each redraw is a Vega run that repaints a canvas, and with a
// chart per key (13 for a quick STAMP run) the redraws of charts nobody was looking at were most of the browser's
// cost of watching; building them (compile, parse, first draw) was part of every page load. A chart is built when
// it first comes into view; once built, its points and caption are kept current and it is redrawn when on screen.
const toBuild = new Set();
let buildTimer = null;
const onScreen = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      const chart = entry.target.chart;
      chart.visible = entry.isIntersecting;
      if (!chart.visible) continue;
      if (chart.view === null && !chart.building) {
        toBuild.add(chart);
        if (buildTimer === null) buildTimer = setTimeout(() => buildVisible().catch(showError), 0);
      } else if (chart.stale) chart.redraw();
    }
  },
  { rootMargin: "200px" },
);

function current(chart) {
  return charts.get(chart.def.id) === chart && chart.view === null;
}

// Build the charts that came into view, with one request for their points.
async function buildVisible() {
  buildTimer = null;
  const list = [...toBuild].filter(current);
  toBuild.clear();
  if (!list.length) return;
  for (const c of list) c.building = true;
  try {
    const fresh = await reload(list, current); // a newer render may have replaced some while they loaded
    refreshDomain(fresh);
  } finally {
    for (const c of list) c.building = false;
  }
  setHeight();
  kick();
}

function post(type, data) {
  window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type }, data), "*");
}

let frameHeight = -1;
function setHeight() {
  const height = Math.ceil(document.body.getBoundingClientRect().height) + 8;
  if (height === frameHeight) return; // each message has Streamlit lay out its page again
  frameHeight = height;
  post("streamlit:setFrameHeight", { height });
}

function showError(error) {
  document.getElementById("status").textContent = error ? `Live view: ${error.message || error}` : "";
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

async function getJson(path, params) {
  const response = await fetch(`${args.base}/${path}?${params}`, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${(await response.text()).trim()}`);
  return response.json();
}

function seriesParams(keys) {
  const q = new URLSearchParams();
  for (const key of keys) q.append("key", key);
  return q;
}

class Chart {
  constructor(def, signature) {
    this.def = def;
    this.signature = signature;
    this.view = null;
    this.pending = [];
    this.visible = false; // until the observer says otherwise
    this.building = false;
    this.stale = false; // points or the x range changed while off screen
    this.el = element("div", "chart-box");
    this.el.chart = this;
    this.el.append(element("div", "chart-title", def.title));
    this.plot = element("div", "chart");
    this.el.append(this.plot);
    this.caption = element("div", "caption");
    if (def.caption) this.el.append(this.caption);
    const weight = def.caption ? args.smoothing : 0; // overlays draw raw evaluation values
    this.series = new Map(def.keys.map((key) => [key, new Series(key, weight, args.few)]));
    onScreen.observe(this.el);
  }

  async load(data) {
    for (const [key, s] of this.series) {
      const d = data[key] || { rows: [], total: 0, down: false };
      s.reset(d.rows, d.total, d.down);
    }
    const rows = [...this.series.values()].flatMap((s) => s.rows);
    if (this.view === null) {
      const spec = vegaLite.compile(this.def.spec, { config: vegaConfig }).spec;
      this.view = new vega.View(vega.parse(spec), { renderer: "canvas", container: this.plot, hover: true });
    }
    // one changeset per run: a second change to the same data before the view runs replaces the first
    this.view.change("points", vega.changeset().remove(vega.truthy).insert(rows));
    this.pending = [];
    this.stale = false;
    this.update();
    await this.view.runAsync();
  }

  // New points or a new x range: the caption now; Vega (which keeps one pending change per data set, so points
  // wait here in `pending`) when the chart is on screen.
  redraw() {
    if (!this.visible) {
      if (this.def.caption) this.caption.textContent = this.captionText();
      this.stale = true;
      return;
    }
    this.stale = false;
    this.update();
    this.view.runAsync();
  }

  captionText() {
    return [...this.series.values()].map((s) => s.caption).join(" · ");
  }

  add(key, points) {
    const s = this.series.get(key);
    const rows = s.append(points.map(([step, value, wall]) => [step, value, null, null, wall]), true);
    this.pending.push(...rows); // inserted by update(), in one changeset with the chart's other keys
    return rows.length;
  }

  tooLong() {
    return [...this.series.values()].some((s) => s.rows.length > 2 * args.max_points);
  }

  update() {
    if (this.pending.length) this.view.insert("points", this.pending);
    this.pending = [];
    const list = [...this.series.values()];
    this.view.signal("smooth", list.length === 1 && list[0].smoothable);
    this.view.signal("down", list.some((s) => s.downsampled));
    if (domain) this.view.signal("x_lo", domain[0]).signal("x_hi", domain[1]);
    if (this.def.caption) this.caption.textContent = this.captionText();
  }

  destroy() {
    onScreen.unobserve(this.el);
    if (this.view) this.view.finalize();
    this.el.remove();
  }
}

function applyTheme(theme) {
  if (!theme) return;
  const root = document.documentElement.style;
  root.setProperty("--text", theme.textColor);
  root.setProperty("--faint", theme.textColor + "99");
  root.setProperty("--line", theme.textColor + "26");
  root.setProperty("--code", theme.secondaryBackgroundColor);
  if (theme.primaryColor) root.setProperty("--primary", theme.primaryColor);
  if (theme.font) document.body.style.fontFamily = theme.font;
  const text = theme.textColor;
  const axis = { labelColor: text, titleColor: text, gridColor: text + "1f", domainColor: text + "66", tickColor: text + "66" };
  vegaConfig = { background: null, font: theme.font, axis, legend: { labelColor: text }, view: { stroke: null } };
}

// The status line: from the page's arguments, then from each poll (the page has no fragment redrawing it).
function drawStatus(status) {
  const json = JSON.stringify(status);
  if (json === statusJson) return;
  statusJson = json;
  const box = document.getElementById("run-status");
  if (!status) return box.replaceChildren();
  const row = element("div", "metrics");
  for (const [label, value] of status.metrics) {
    const metric = element("div", "metric");
    metric.append(element("div", "metric-label", label), element("div", "metric-value", value));
    row.append(metric);
  }
  const nodes = [row];
  if (status.progress) {
    const track = element("div", "track");
    const fill = element("div", "fill");
    fill.style.width = `${(100 * status.progress.fraction).toFixed(1)}%`;
    track.append(fill);
    nodes.push(element("div", "progress-text", status.progress.text), track);
  } else if (status.phase) nodes.push(element("div", "caption", status.phase));
  box.replaceChildren(...nodes);
}

// The one-value metrics (test metrics, evaluations) as a table, and why there is nothing to draw, if so.
function drawResults() {
  document.getElementById("message").textContent = args.message || "";
  const box = document.getElementById("results");
  if (!args.results.length) return box.replaceChildren();
  const table = element("table");
  const head = element("tr");
  for (const name of ["key", "value", "step"]) head.append(element("th", null, name));
  table.append(element("thead"), element("tbody"));
  table.tHead.append(head);
  for (const row of args.results) {
    const tr = element("tr");
    for (const cell of row) tr.append(element("td", null, String(cell)));
    table.tBodies[0].append(tr);
  }
  const note = "Metrics with a single value so far (test metrics, evaluations): a table, not one-point charts.";
  box.replaceChildren(element("h3", null, "results"), element("div", "note", note), table);
}

// Ask the page to rerun (by setting the component's value): the chart plan changed, or the run ended.
function askRerun(reason) {
  if (asked === reason) return;
  asked = reason;
  post("streamlit:setComponentValue", { value: { rerun: reason, at: Date.now() }, dataType: "json" });
}

function render() {
  ++generation;
  asked = null; // the page drew this plan; if the poll still says otherwise, ask again
  drawnAt = Date.now();
  drawStatus(args.status);
  drawResults();
  const container = document.getElementById("charts");
  const next = new Map();
  const nodes = [];
  for (const section of args.sections) {
    nodes.push(element("h3", null, section.title));
    if (section.note) nodes.push(element("div", "note", section.note));
    const grid = element("div", section.title === "overview" ? "grid two" : "grid");
    for (const def of section.charts) {
      const signature = JSON.stringify([def.keys, def.spec, def.caption, args.smoothing, args.x]);
      let chart = charts.get(def.id);
      if (!chart || chart.signature !== signature) chart = new Chart(def, signature); // built once in view
      next.set(def.id, chart);
      grid.append(chart.el);
    }
    nodes.push(grid);
  }
  for (const [id, chart] of charts) if (next.get(id) !== chart) chart.destroy();
  charts = next;
  container.replaceChildren(...nodes);
  refreshDomain([]);
  setHeight();
  kick();
}

// Poll now (after the one in flight, if any), instead of at the next tick.
function kick() {
  if (inflight) {
    again = true;
    return;
  }
  if (timer !== null) clearTimeout(timer);
  poll();
}

function readyCharts() {
  return [...charts.values()].filter((c) => c.view !== null);
}

// Set the shared x range; redraw the charts given (those with new points) and, if the range moved, all of them.
function refreshDomain(dirty) {
  const ready = readyCharts();
  const next = xDomain(ready.flatMap((c) => [...c.series.values()]), args.x, args.started_ms);
  const moved = JSON.stringify(next) !== JSON.stringify(domain);
  domain = next;
  for (const c of moved ? ready : dirty) c.redraw();
}

// Load the charts' points with one request; `keep` says which charts still want them once it answers.
async function reload(list, keep = () => true) {
  const keys = [...new Set(list.flatMap((c) => c.def.keys))];
  const data = (await getJson("series.json", seriesParams(keys))).series;
  const loading = list.filter(keep);
  await Promise.all(loading.map((c) => c.load(data)));
  return loading;
}

function schedule(ms) {
  timer = setTimeout(poll, ms);
}

async function poll() {
  timer = null;
  if (!args) return;
  if (document.hidden) return schedule(1000); // a hidden tab asks for nothing
  const gen = generation;
  const ready = readyCharts();
  const after = new Map();
  for (const c of ready) {
    for (const [key, s] of c.series) {
      const step = s.rows.length ? s.lastStep : NO_STEP;
      after.set(key, Math.min(after.has(key) ? after.get(key) : Infinity, step));
    }
  }
  const q = new URLSearchParams();
  for (const [key, step] of after) {
    q.append("key", key);
    q.append("after", String(step));
  }
  q.set("log", String(logSize));
  q.set("events", String(lastEvent));
  let answer;
  inflight = true;
  try {
    answer = await getJson("poll.json", q);
  } catch (error) {
    showError(error);
    if (args.live) schedule(3 * args.poll_ms);
    return;
  } finally {
    inflight = false;
  }
  if (gen !== generation || again) {
    again = false;
    return schedule(0); // the charts changed while this poll was out: ask again for them
  }
  showError(null);
  const dirty = [];
  const stale = [];
  for (const c of ready) {
    let added = 0;
    for (const key of c.def.keys) if (answer.points[key]) added += c.add(key, answer.points[key]);
    if (added) {
      dirty.push(c);
      if (c.tooLong() || c.def.keys.some((k) => answer.more.includes(k))) stale.push(c);
    }
  }
  if (stale.length) await reload(stale);
  let changed = dirty.length > 0;
  if (changed) refreshDomain(dirty);
  if (answer.log) {
    changed = true;
    logSize = answer.log.size;
    const pre = document.getElementById("log");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = answer.log.text || "(empty)";
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }
  if (answer.events) {
    changed = true;
    lastEvent = answer.events.last;
    const body = document.querySelector("#events tbody");
    body.replaceChildren(
      ...answer.events.rows.map((e) => {
        const tr = element("tr");
        tr.append(element("td", null, localTime(e.time)), element("td", null, e.event), element("td", null, e.message));
        return tr;
      }),
    );
  }
  if (args.status && answer.run) {
    drawStatus(answer.run); // the duration moves every poll: that alone is not news for the polling pace
    if (answer.run.started_ms !== args.started_ms) {
      args.started_ms = answer.run.started_ms; // a queued run started: the wall-time axis begins there
      refreshDomain([]);
    }
  }
  setHeight();
  if (!args.live) return;
  if (answer.ended) return askRerun("ended"); // the page draws the ended run: its status, results and actions
  if (replanDue(answer.plan, args.plan, args.sections.length > 0, Date.now() - drawnAt)) askRerun(answer.plan);
  quiet = changed ? 0 : quiet + 1;
  schedule(quiet > QUIET_POLLS ? 2 * args.poll_ms : args.poll_ms);
}

function localTime(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

window.addEventListener("message", (event) => {
  const message = event.data;
  if (!message || message.type !== "streamlit:render") return;
  applyTheme(message.theme);
  const json = JSON.stringify(message.args);
  if (json === argsJson) return; // a rerun for another reason (a control above) re-sends the same plan
  if (args && args.run !== message.args.run) {
    for (const chart of charts.values()) chart.destroy();
    charts = new Map();
    domain = null;
    logSize = -1;
    lastEvent = -1;
  }
  argsJson = json;
  args = message.args;
  render();
});
new ResizeObserver(setHeight).observe(document.body);
post("streamlit:componentReady", { apiVersion: 1 });
