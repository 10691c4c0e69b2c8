// The live view's rules about data, apart from the DOM and Vega (tests/test_live_view.py runs them in Chromium).
"use strict";

// Evaluation metrics: a point per epoch, pass or evaluation. An EMA over them lags far behind the truth (the Spleeter
// overview's smoothed SI-SDR ended at 3.5 dB while the last evaluation said 6.35 dB), so they are never smoothed.
const EVAL_PHASES = new Set(["valid", "test", "infer", "pass", "eval"]);

function phaseOf(key) {
  const i = key.indexOf("/");
  return i >= 0 ? key.slice(0, i) : "other";
}

// One key's series as the view holds it: rows for Vega, and what smoothing and the caption need, kept as points
// arrive one poll at a time (the EMA and the monotone test are incremental, so a poll costs its new points only).
class Series {
  constructor(key, smoothing, few) {
    this.key = key;
    this.weight = smoothing;
    this.few = few;
    this.evaluation = EVAL_PHASES.has(phaseOf(key));
    this.reset([], 0, false);
  }

  reset(rows, total, downsampled) {
    this.rows = [];
    this.total = total;
    this.downsampled = downsampled;
    this.acc = 0;
    this.n = 0;
    this.finite = 0;
    this.rising = true;
    this.falling = true;
    this.prev = null;
    this.lastStep = -Infinity;
    this.firstStep = Infinity;
    this.lastWall = null;
    this.append(rows, false);
  }

  // rows: [step, value, vmin, vmax, wall] (wall in seconds); `counted`: points new to the run (not a reload)
  append(rows, counted) {
    const out = [];
    for (const [step, value, vmin, vmax, wall] of rows) {
      if (step <= this.lastStep) continue; // a point the view has already (a poll overlapping the first load)
      let smoothed = value;
      if (value !== null && Number.isFinite(value)) {
        this.acc = this.weight * this.acc + (1 - this.weight) * value;
        this.n += 1;
        smoothed = this.weight > 0 ? this.acc / (1 - Math.pow(this.weight, this.n)) : value;
        if (this.prev !== null) {
          if (value < this.prev) this.rising = false;
          if (value > this.prev) this.falling = false;
        }
        this.prev = value;
        this.finite += 1;
      }
      const row = { step, value, smoothed, vmin: vmin ?? value, vmax: vmax ?? value, wall: wall * 1000, series: this.key };
      this.rows.push(row);
      out.push(row);
      this.lastStep = step;
      this.firstStep = Math.min(this.firstStep, step);
      this.lastWall = wall;
      if (counted) this.total += 1;
    }
    return out;
  }

  // Dense per-step training series only: not evaluation metrics, not counters or schedules (monotone: `train/epoch`
  // smoothed ended at 4.8 of 6), not short series.
  get smoothable() {
    return this.weight > 0 && !this.evaluation && this.finite > this.few && !(this.rising || this.falling);
  }

  get caption() {
    const n = this.rows.length.toLocaleString("en-US");
    const total = this.total.toLocaleString("en-US");
    return this.downsampled ? `${n} of ${total} points (bucket means; band = min/max per bucket)` : `${n} of ${total} points`;
  }
}

// The smallest of 1, 2, 5 x 10^k at or above x: an axis bound that changes a few times in a run, not every second.
function niceCeiling(x) {
  if (!(x > 0)) return 1;
  const base = Math.pow(10, Math.floor(Math.log10(x)));
  for (const m of [1, 2, 5, 10]) if (m * base >= x * (1 - 1e-12)) return m * base;
  return 10 * base;
}

// One x range for all of a run's charts, so that step 300 (or 14:05:10) sits at the same place on each.
// axis "step": [min(0, first step), nice(last step)]; "wall": epoch ms from the run's start.
function xDomain(seriesList, axis, startedMs) {
  const live = seriesList.filter((s) => s.rows.length > 0);
  if (live.length === 0) return null;
  if (axis === "step") {
    const lo = Math.min(0, ...live.map((s) => s.firstStep));
    return [lo, niceCeiling(Math.max(...live.map((s) => s.lastStep)))];
  }
  if (startedMs === null || startedMs === undefined) return null;
  const lastWall = Math.max(...live.map((s) => s.lastWall)) * 1000;
  return [startedMs, startedMs + niceCeiling(Math.max(1000, lastWall - startedMs) / 1000) * 1000];
}

// A changed chart plan reruns the page at most this often once something is drawn: a quick STAMP run's plan changed
// three times in its first 1.1 s of training (the first points, the first epoch's keys, their second points), and
// each rerun cost the UI server and the browser ~0.45 CPU s, taken from the run (docs/dashboard.md).
const REPLAN_MS = 5000;

// Whether the poll's plan token asks for a rerun of the page: at once while no chart is drawn (the first metrics,
// or the first series past one point), else once REPLAN_MS have passed since the page drew its plan.
function replanDue(token, drawnToken, chartsDrawn, sinceDrawnMs) {
  return token !== drawnToken && (!chartsDrawn || sinceDrawnMs >= REPLAN_MS);
}

if (typeof module !== "undefined") module.exports = { Series, niceCeiling, xDomain, phaseOf, replanDue };
