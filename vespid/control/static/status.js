// vespid status page: polls /api/v0/status and /api/v0/history every second and draws
// endpoints, workers and charts. No library, no build step; every text from the server
// goes in through textContent.
"use strict";

(() => {
  const POLL_MS = 1000;
  const RECENT_S = 10; // the "now" figures are means over the last RECENT_S seconds
  // stacked in this order, bottom up: serving, on their way to serving, out of service
  const STATES = ["ready", "waking", "starting", "draining", "parked", "errored"];
  // the scaling log's actions, as the page labels them
  const ACTIONS = { start: "▲ start", stop: "▼ stop", drain: "↓ drain", park: "■ park", wake: "▶ wake" };

  const state = {
    windowS: 300,
    status: null,
    history: new Map(), // endpoint -> samples, oldest first
    lastT: null,
    intervalS: 1,
    keepS: 600,
    cards: new Map(), // endpoint -> card elements
    failures: 0,
  };

  // -- small helpers ---------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
  }

  function num(v, digits = 1) {
    if (v == null || !Number.isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    if (a >= 100) return v.toFixed(0);
    return v.toFixed(a < 10 ? Math.max(digits, 1) : 1).replace(/\.0+$/, "");
  }

  function secs(v) {
    if (v == null || !Number.isFinite(v)) return "–";
    if (v === 0) return "0 s";
    if (v < 1) return `${Math.max(1, Math.round(v * 1000))} ms`;
    if (v < 60) return `${v.toFixed(v < 10 ? 1 : 0)} s`;
    return age(v);
  }

  function age(v) {
    if (v == null || !Number.isFinite(v)) return "–";
    v = Math.max(0, Math.floor(v));
    if (v < 60) return `${v} s`;
    if (v < 3600) return `${Math.floor(v / 60)} min` + (v % 60 ? ` ${v % 60} s` : "");
    return `${Math.floor(v / 3600)} h` + (v % 3600 >= 60 ? ` ${Math.floor((v % 3600) / 60)} min` : "");
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString("en-GB", { hour12: false });
  }

  function withUnit(value, unit) {
    return [value, el("span", { class: "unit", text: unit })];
  }

  async function getJSON(path) {
    const resp = await fetch(path, { cache: "no-store" });
    if (!resp.ok) throw new Error(`${path} answered ${resp.status}`);
    return resp.json();
  }

  // -- polling -----------------------------------------------------------------

  async function poll() {
    try {
      const since = state.lastT == null ? "" : `?since=${state.lastT}`;
      const [status, history] = await Promise.all([
        getJSON("api/v0/status"),
        getJSON("api/v0/history" + since),
      ]);
      merge(history, status);
      state.status = status;
      state.failures = 0;
      render();
      setLive("live", `live · ${clock(status.time)}`);
    } catch (err) {
      state.failures += 1;
      const down = state.failures >= 3;
      setLive(down ? "down" : "connecting",
        down ? `no answer from the control plane (${err.message})` : "reconnecting…");
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  function setLive(kind, text) {
    const live = document.getElementById("live");
    live.dataset.state = kind;
    document.getElementById("live-text").textContent = text;
  }

  function merge(history, status) {
    state.intervalS = history.interval_s || 1;
    state.keepS = history.window_s || 600;
    for (const [name, samples] of Object.entries(history.endpoints)) {
      const series = state.history.get(name) || [];
      for (const s of samples) {
        if (!series.length || s.t > series[series.length - 1].t) series.push(s);
        if (state.lastT == null || s.t > state.lastT) state.lastT = s.t;
      }
      const oldest = (state.lastT ?? 0) - state.keepS;
      while (series.length && series[0].t < oldest) series.shift();
      state.history.set(name, series);
    }
    const live = new Set(status.endpoints.map((e) => e.name));
    for (const name of [...state.history.keys()]) if (!live.has(name)) state.history.delete(name);
  }

  // -- rendering -----------------------------------------------------------------

  function render() {
    const status = state.status;
    const root = document.getElementById("endpoints");
    const names = new Set(status.endpoints.map((e) => e.name));
    for (const [name, card] of state.cards) {
      if (!names.has(name)) {
        card.root.remove();
        state.cards.delete(name);
      }
    }
    if (!status.endpoints.length) {
      root.replaceChildren(el("p", { class: "empty" }, "No endpoints yet. Create one: ",
        el("code", { text: "vespid endpoint create NAME --model-command '…'" })));
    } else {
      root.querySelector(".empty")?.remove();
      for (const endpoint of status.endpoints) {
        let card = state.cards.get(endpoint.name);
        if (!card) {
          card = makeCard(endpoint.name);
          state.cards.set(endpoint.name, card);
          root.append(card.root);
        }
        renderCard(card, endpoint, state.history.get(endpoint.name) || [], status.time);
      }
    }
    renderLog(status.scaling_log || []);
    const d = status.route_decisions || {};
    document.getElementById("decisions").textContent =
      `since start: ${num(d.routed ?? 0)} routed · ${num(d.queued ?? 0)} queued · ${num(d.rejected ?? 0)} refused`;
  }

  function makeCard(name) {
    const charts = CHARTS.map((spec) => {
      const legend = el("div", { class: "legend" });
      const canvas = el("canvas", { "data-chart": spec.id });
      const box = el("div", { class: "chart", "data-chart": spec.id },
        el("div", { class: "chart-head" }, el("span", { class: "chart-title", text: spec.title }), legend),
        canvas);
      return { spec, box, canvas, legend };
    });
    const stats = el("div", { class: "stats" });
    const params = el("div", { class: "params" });
    const tbody = el("tbody");
    const root = el("section", { class: "panel endpoint", "data-endpoint": name },
      el("div", { class: "endpoint-head" }, el("h2", { text: name }), stats, params),
      el("div", { class: "workers" }, el("table", {},
        el("thead", {}, el("tr", {}, ...WORKER_COLUMNS.map(([label, cls, title]) => el("th", { class: cls || "", text: label, title: title || "" })))),
        tbody)),
      el("div", { class: "charts" }, ...charts.map((c) => c.box)));
    return { root, stats, params, tbody, charts };
  }

  function recent(samples, key, reduce = "mean") {
    const last = samples.length ? samples[samples.length - 1].t : 0;
    const values = samples.filter((s) => s.t > last - RECENT_S).map((s) => s[key]).filter((v) => v != null);
    if (!values.length) return null;
    if (reduce === "max") return Math.max(...values);
    return values.reduce((a, b) => a + b, 0) / values.length;
  }

  function stat(id, value, unit, label, title) {
    return el("div", { class: "stat", "data-stat": id, title: title || "" },
      el("span", { class: "v" }, value, unit ? el("small", { text: unit }) : null),
      el("span", { class: "k", text: label }));
  }

  function renderCard(card, endpoint, samples, now) {
    const workers = endpoint.workers;
    const count = (st) => workers.filter((w) => w.state === st).length;
    const ready = count("ready");
    const load = workers.reduce((a, w) => a + (w.cur_load || 0), 0);
    const rollout = endpoint.rollout || {};
    card.stats.replaceChildren(
      stat("ready", `${ready}/${workers.length}`, "", "workers ready"),
      stat("parked", num(count("parked")), "", "parked",
        "workers parked: model server loaded (asleep where it can), no traffic; woken first on a burst"),
      stat("parked-s", secs(endpoint.parked_s), "", "parked, total",
        "seconds this endpoint's workers have spent parked, those gone included"),
      stat("rollout", `rev ${endpoint.revision}`, "", `rollout ${rollout.state || "–"}`,
        rollout.halted ? `halted: ${rollout.halted}` : `template revision; last good ${rollout.good_revision ?? "–"}`),
      stat("queued", num(endpoint.queued), endpoint.queued === 1 ? "request" : "requests",
        "in router queue", "requests waiting for a worker to take them"),
      stat("requests", num(recent(samples, "requests_per_s") ?? 0), "req/s", `arrived (${RECENT_S} s)`,
        "requests that reached the router, per second"),
      stat("finished", num(recent(samples, "finished_per_s") ?? 0), "req/s", `finished (${RECENT_S} s)`,
        "requests the workers reported finished, per second"),
      stat("router-wait", secs(recent(samples, "wait_max_s", "max")), "",
        `router queue wait, max (${RECENT_S} s)`, "longest wait for a worker to take a request"),
      stat("worker-wait", secs(recent(samples, "worker_wait_max_s", "max")), "",
        `worker queue wait, max (${RECENT_S} s)`,
        "longest wait in a worker's queue before its work started (requests finished)"),
      stat("worker-time", secs(recent(samples, "worker_time_max_s", "max")), "",
        `time in worker, max (${RECENT_S} s)`,
        "longest time from entering a worker to finishing: its queue, the model server's own queue, the work"),
      stat("load", num(load), "workload", "load in workers"));
    const s = endpoint.scaling;
    const idle = s.inactivity_timeout > 0 ? `to zero after ${age(s.inactivity_timeout)} idle` : "never to zero";
    card.params.replaceChildren("scaling: ",
      ...[["min_load", num(s.min_load)], ["max_workers", num(s.max_workers)],
        ["target_util", num(s.target_util, 2)], ["max_queue_time", secs(s.max_queue_time)],
        ["scale_down_delay", secs(s.scale_down_delay)], ["reservoir_workers", num(s.reservoir_workers)],
        ["park_timeout", s.park_timeout > 0 ? secs(s.park_timeout) : "never"]]
        .flatMap(([k, v]) => [`${k} `, el("b", { text: v }), " · "]),
      idle);
    renderWorkers(card.tbody, workers, s, now);
    for (const chart of card.charts) drawChart(chart, samples);
  }

  const WORKER_COLUMNS = [
    ["worker"], ["rev", "num", "the template revision it was started on"],
    ["state", "", "its phase; parked ones show how long they have been parked"],
    ["load", "num", "workload in the worker now"],
    ["est. wait", "num", "load / perf: how long a new request would wait"],
    ["perf", "num", "throughput the worker measured or declared (workload/s)"],
    ["in flight", "num", "requests (and sessions) the worker holds"],
    ["sessions", "num", "open sessions (reservations) on the worker"],
    ["served (workload)", "num", "workload served since it started"], ["up", "num"],
    ["cold start", "num", "from its start to ready"],
  ];

  function renderWorkers(tbody, workers, scaling, now) {
    if (!workers.length) {
      tbody.replaceChildren(el("tr", {}, el("td", {
        class: "none", colSpan: WORKER_COLUMNS.length,
        text: "no workers: the next request starts one",
      })));
      return;
    }
    const rows = [];
    for (const w of [...workers].sort((a, b) => a.worker_id - b.worker_id)) {
      const wait = w.max_perf ? w.cur_load / w.max_perf : null;
      const limit = scaling.max_queue_time || 1;
      const fill = wait == null ? 0 : Math.min(1, wait / limit);
      const bar = el("span", { class: "bar", title: `of max_queue_time ${secs(limit)}` },
        el("i", { class: fill > 0.8 ? "hot" : "", style: `width:${(fill * 100).toFixed(0)}%` }));
      rows.push(el("tr", { "data-worker": String(w.worker_id), "data-state": w.state },
        el("td", {}, `#${w.worker_id} `, el("span", { class: "mono", text: w.url.replace(/^https?:\/\//, "") })),
        el("td", { class: "num", text: String(w.revision) }),
        el("td", {}, el("span", { class: `pill ${w.state}`, text: w.state }),
          w.state === "parked" ? el("span", { class: "since", text: ` ${age(w.parked_s)}` }) : null),
        el("td", { class: "num", text: num(w.cur_load) }),
        el("td", { class: "num" }, secs(wait), bar),
        el("td", { class: "num" }, ...(w.max_perf ? withUnit(num(w.max_perf), "/s") : ["–"])),
        el("td", { class: "num", text: num(w.in_flight) }),
        el("td", { class: "num", text: num(w.sessions || 0) }),
        el("td", { class: "num", text: num(w.served_total) }),
        el("td", { class: "num", text: age(now - w.started_at) }),
        el("td", { class: "num", text: secs(w.ready_after_s), title: "from its start to ready" })));
      if (w.error_msg) {
        rows.push(el("tr", {}, el("td", {}), el("td", { class: "err", colSpan: WORKER_COLUMNS.length - 1, text: w.error_msg })));
      }
    }
    tbody.replaceChildren(...rows);
  }

  function renderLog(log) {
    const tbody = document.getElementById("log");
    const rows = log.slice(-20).reverse().map((e) => el("tr", {},
      el("td", { class: "mono", text: clock(e.time) }),
      el("td", { text: e.endpoint }),
      el("td", {}, el("span", { class: `pill ${e.action}`, "data-action": e.action, text: ACTIONS[e.action] || e.action })),
      el("td", { text: `#${e.worker_id}` }),
      el("td", { class: "reason", text: e.reason })));
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "none", colSpan: 5, text: "none yet" }))]));
  }

  // -- charts --------------------------------------------------------------------

  const CHARTS = [
    {
      id: "requests", title: "Requests", kind: "bars", format: (v) => `${num(v)}/s`,
      series: [
        { label: "arrived", color: "--requests", value: (s) => s.requests_per_s },
        { label: "refused", color: "--rejected", value: (s) => s.rejected_per_s },
      ],
    },
    {
      id: "wait", title: "Queue wait", kind: "lines", format: secs, reduce: "max",
      series: [
        { label: "router max", color: "--wait-max", fill: true, value: (s) => s.wait_max_s },
        { label: "router mean", color: "--wait", value: (s) => s.wait_mean_s },
        { label: "worker max", color: "--worker-wait-max", fill: true, value: (s) => s.worker_wait_max_s },
        { label: "worker mean", color: "--worker-wait", value: (s) => s.worker_wait_mean_s },
      ],
    },
    {
      id: "worker-time", title: "Time in worker (queue, model server, work)", kind: "lines",
      format: secs, reduce: "max",
      series: [
        { label: "max", color: "--worker-wait-max", fill: true, value: (s) => s.worker_time_max_s },
        { label: "mean", color: "--worker-wait", value: (s) => s.worker_time_mean_s },
      ],
    },
    {
      id: "workers", title: "Workers by state", kind: "stack", integer: true, format: (v) => num(v),
      series: STATES.map((st) => ({ label: st, color: `--${st}`, value: (s) => s.workers[st] || 0 })),
    },
    {
      id: "scaling", title: "Scaling decisions", kind: "events", integer: true, format: (v) => num(v),
      series: [
        { label: "queued", color: "--stopping", fill: true, value: (s) => s.queued },
        { label: "▲ started", color: "--start", event: (s) => s.started },
        { label: "▼ stopped", color: "--stop", event: (s) => s.stopped, down: true },
        { label: "▶ woken", color: "--waking", event: (s) => s.woken },
        { label: "■ parked", color: "--parked", event: (s) => s.parked, down: true },
      ],
    },
  ];

  function niceMax(v, integer) {
    if (!(v > 0)) return 1;
    if (integer && v <= 4) return Math.ceil(v);
    const exp = 10 ** Math.floor(Math.log10(v));
    const f = v / exp;
    const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
    return integer ? Math.ceil(nice * exp) : nice * exp;
  }

  function legendFor(chart, visible) {
    const spec = chart.spec;
    chart.legend.replaceChildren(...spec.series.map((ser) => {
      let value;
      if (ser.event) {
        value = num(visible.reduce((a, s) => a + (ser.event(s) || 0), 0));
      } else if (spec.kind === "stack" || spec.kind === "events") {
        value = spec.format(visible.length ? ser.value(visible[visible.length - 1]) : null);
      } else {
        const vals = visible.filter((s) => s.t > (visible[visible.length - 1]?.t ?? 0) - RECENT_S)
          .map(ser.value).filter((v) => v != null);
        const v = !vals.length ? null : spec.reduce === "max" ? Math.max(...vals)
          : vals.reduce((a, b) => a + b, 0) / vals.length;
        value = spec.format(v);
      }
      return el("span", {}, el("i", { style: `background:${css(ser.color)}` }), `${ser.label} `, el("b", { text: value }));
    }));
  }

  function drawChart(chart, samples) {
    const { canvas, spec } = chart;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    const tMax = samples.length ? samples[samples.length - 1].t : Date.now() / 1000;
    const tMin = tMax - state.windowS;
    const visible = samples.filter((s) => s.t >= tMin);
    chart.box.dataset.points = String(visible.length);
    chart.box.dataset.last = visible.length ? String(visible[visible.length - 1].t) : "";
    legendFor(chart, visible);

    // y range
    let top = 0;
    for (const s of visible) {
      if (spec.kind === "stack") top = Math.max(top, spec.series.reduce((a, ser) => a + ser.value(s), 0));
      else for (const ser of spec.series) {
        const v = ser.event ? null : ser.value(s); // events are drawn at fixed heights
        if (v != null) top = Math.max(top, v);
      }
    }
    chart.box.dataset.peak = String(top); // the highest value drawn: tests watch it
    const yMax = niceMax(top, spec.integer);
    const pad = { l: 46, r: 10, t: 8, b: 20 };
    const pw = w - pad.l - pad.r;
    const ph = h - pad.t - pad.b;
    const x = (t) => pad.l + ((t - tMin) / state.windowS) * pw;
    const y = (v) => pad.t + ph - (Math.min(v, yMax) / yMax) * ph;

    // grid and labels
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = css("--muted");
    ctx.strokeStyle = css("--grid");
    ctx.lineWidth = 1;
    const ticks = spec.integer && yMax <= 4 ? [...Array(yMax + 1).keys()] : [0, yMax / 2, yMax];
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of ticks) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(w - pad.r, yy);
      ctx.stroke();
      ctx.fillText(spec.format(v), pad.l - 6, yy);
    }
    const step = state.windowS <= 60 ? 15 : state.windowS <= 300 ? 60 : 120;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let ago = 0; ago <= state.windowS; ago += step) {
      const xx = x(tMax - ago);
      const label = ago === 0 ? "now" : ago < 60 ? `−${ago} s` : `−${ago / 60} min`;
      ctx.fillText(label, Math.min(Math.max(xx, pad.l + 14), w - pad.r - 12), pad.t + ph + 5);
    }

    if (!visible.length) {
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("waiting for samples…", pad.l + pw / 2, pad.t + ph / 2);
      return;
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.l, pad.t - 1, pw, ph + 2);
    ctx.clip();
    if (spec.kind === "stack") drawStack(ctx, spec, visible, x, y);
    else if (spec.kind === "bars") for (const ser of spec.series) drawBars(ctx, ser, visible, x, y);
    else {
      for (const ser of spec.series) {
        if (ser.event) drawEvents(ctx, ser, visible, x, y(0), ph);
        else drawLine(ctx, ser, visible, x, y, spec.kind === "events");
      }
    }
    ctx.restore();
  }

  // Runs of consecutive samples (a gap of more than 3 intervals, or a null, breaks a run).
  function runs(samples, value) {
    const out = [];
    let run = [];
    let prevT = null;
    for (const s of samples) {
      const v = value(s);
      if (v == null || (prevT != null && s.t - prevT > 3 * state.intervalS)) {
        if (run.length) out.push(run);
        run = [];
      }
      if (v != null) run.push([s.t, v]);
      prevT = s.t;
    }
    if (run.length) out.push(run);
    return out;
  }

  function drawLine(ctx, ser, samples, x, y, stepped) {
    const color = css(ser.color);
    for (const run of runs(samples, ser.value)) {
      const pts = [];
      run.forEach(([t, v], i) => {
        if (stepped && i > 0) pts.push([x(t), y(run[i - 1][1])]);
        pts.push([x(t), y(v)]);
      });
      if (pts.length === 1) {
        ctx.beginPath();
        ctx.arc(pts[0][0], pts[0][1], 2.5, 0, 2 * Math.PI);
        ctx.fillStyle = color;
        ctx.fill();
        continue;
      }
      if (ser.fill) {
        ctx.beginPath();
        ctx.moveTo(pts[0][0], y(0));
        for (const [px, py] of pts) ctx.lineTo(px, py);
        ctx.lineTo(pts[pts.length - 1][0], y(0));
        ctx.closePath();
        ctx.globalAlpha = 0.18;
        ctx.fillStyle = color;
        ctx.fill();
        ctx.globalAlpha = 1;
      }
      ctx.beginPath();
      pts.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.8;
      ctx.lineJoin = "round";
      ctx.stroke();
    }
  }

  // One bar a sample, over the interval that ends at its time (at least 1.5 px wide).
  function drawBars(ctx, ser, samples, x, y) {
    ctx.fillStyle = css(ser.color);
    for (const s of samples) {
      const v = ser.value(s);
      if (!v) continue;
      const x1 = x(s.t);
      const x0 = Math.min(x(s.t - state.intervalS), x1 - 1.5);
      ctx.fillRect(x0, y(v), x1 - x0, y(0) - y(v));
    }
  }

  // Each sample covers the interval that ends at its time: (t - interval, t].
  function drawStack(ctx, spec, samples, x, y) {
    const below = samples.map(() => 0);
    const segments = [];
    samples.forEach((s, i) => {
      if (!i || s.t - samples[i - 1].t > 3 * state.intervalS) segments.push([]);
      segments[segments.length - 1].push(i);
    });
    for (const ser of spec.series) {
      const above = samples.map((s, i) => below[i] + ser.value(s));
      ctx.beginPath();
      for (const idx of segments) {
        idx.forEach((i, k) => {
          const x0 = x(samples[i].t - state.intervalS);
          const x1 = x(samples[i].t);
          if (k === 0) ctx.moveTo(x0, y(above[i]));
          else ctx.lineTo(x0, y(above[i]));
          ctx.lineTo(x1, y(above[i]));
        });
        for (let k = idx.length - 1; k >= 0; k--) {
          const i = idx[k];
          ctx.lineTo(x(samples[i].t), y(below[i]));
          ctx.lineTo(x(samples[i].t - state.intervalS), y(below[i]));
        }
        ctx.closePath();
      }
      ctx.globalAlpha = 0.85;
      ctx.fillStyle = css(ser.color);
      ctx.fill();
      ctx.globalAlpha = 1;
      above.forEach((v, i) => { below[i] = v; });
    }
  }

  function drawEvents(ctx, ser, samples, x, baseY, ph) {
    ctx.fillStyle = css(ser.color);
    ctx.strokeStyle = css(ser.color);
    ctx.textAlign = "center";
    for (const s of samples) {
      const n = ser.event(s);
      if (!n) continue;
      const xx = x(s.t);
      ctx.globalAlpha = 0.35;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(xx, baseY);
      ctx.lineTo(xx, ser.down ? baseY - ph * 0.45 : baseY - ph * 0.85);
      ctx.stroke();
      ctx.globalAlpha = 1;
      const tipY = ser.down ? baseY - ph * 0.45 : baseY - ph * 0.85;
      const dir = ser.down ? 1 : -1;
      ctx.beginPath();
      ctx.moveTo(xx, tipY + dir * 6);
      ctx.lineTo(xx - 5, tipY - dir * 3);
      ctx.lineTo(xx + 5, tipY - dir * 3);
      ctx.closePath();
      ctx.fill();
      if (n > 1) {
        ctx.textBaseline = ser.down ? "top" : "bottom";
        ctx.fillText(`×${n}`, xx, tipY + (ser.down ? 8 : -5));
      }
    }
  }

  // -- start -----------------------------------------------------------------------

  for (const button of document.querySelectorAll(".window button")) {
    button.addEventListener("click", () => {
      state.windowS = Number(button.dataset.window);
      for (const b of document.querySelectorAll(".window button")) b.classList.toggle("on", b === button);
      if (state.status) render();
    });
  }
  window.addEventListener("resize", () => state.status && render());
  poll();
})();
