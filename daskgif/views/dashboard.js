// The daskgif runs page: polls the scheduler's JSON once a second and draws it.
// Data only ever reaches the page as text (textContent, title): never as HTML.
"use strict";
(function () {
  const base = document.body.dataset.base;
  const STATES = ["Success", "Skipped", "Failed"];
  let selected = decodeURIComponent(location.hash.replace(/^#/, "")) || null;
  let lastDetail = null;

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "title") node.title = value;
      else if (key === "onclick") node.addEventListener("click", value);
      else if (key === "style") Object.assign(node.style, value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const cls = (state) => "s-" + String(state).replace(/[^A-Za-z]+/g, "-");
  const badge = (state, why) => el("span", {class: "badge " + cls(state), title: why || undefined}, state);
  const text = (value) => (value === null || value === undefined) ? "" :
    (typeof value === "string" ? value : JSON.stringify(value));

  function seconds(value) {
    if (value === null || value === undefined) return "";
    if (value < 1) return (value * 1000).toFixed(0) + " ms";
    if (value < 120) return value.toFixed(1) + " s";
    return Math.floor(value / 60) + " min " + Math.round(value % 60) + " s";
  }

  function clock(stamp) {
    return stamp ? new Date(stamp * 1000).toLocaleTimeString() : "";
  }

  function elapsed(run, now) {
    if (run.start === null || run.start === undefined) return null;
    return (run.end !== null && run.end !== undefined ? run.end : now) - run.start;
  }

  function bar(frames) {
    const total = frames.total || frames.done || 0;
    const parts = STATES.filter((s) => frames.counts[s]).map((s) =>
      el("div", {class: cls(s), style: {width: (100 * frames.counts[s] / Math.max(total, 1)) + "%"},
                 title: frames.counts[s] + " " + s.toLowerCase()}));
    return el("div", {class: "bar", title: frames.done + " of " + (frames.total ?? "?") + " frames done"}, parts);
  }

  function frameLine(frames) {
    const total = frames.total === null || frames.total === undefined ? "?" : frames.total;
    const extra = STATES.slice(1).filter((s) => frames.counts[s])
      .map((s) => frames.counts[s] + " " + s.toLowerCase());
    return frames.done + " / " + total + (extra.length ? " · " + extra.join(" · ") : "");
  }

  function renderRuns(data) {
    const rows = data.runs.map((run) => el("tr", {
      class: "run" + (run.run === selected ? " selected" : ""),
      title: "show run " + run.run + (run.batch ? " (batch " + run.batch + ")" : ""),
      onclick: () => { selected = run.run; location.hash = encodeURIComponent(run.run); poll(true); },
    },
      el("td", null, badge(run.state, run.message)),
      el("td", {class: "path"}, run.run.slice(0, 12)),
      el("td", {class: "time"}, clock(run.start)),
      el("td", {class: "num"}, seconds(elapsed(run, data.now))),
      el("td", null, frameLine(run.frames), bar(run.frames)),
      el("td", {class: "path"}, text(run.parameters.url)),
      el("td", {class: "path"}, text(run.out)),
    ));
    document.getElementById("runs").replaceChildren(
      ...(rows.length ? rows : [el("tr", null, el("td", {colspan: 7, class: "note"},
        "No run yet. Runs appear here as soon as their first task starts on this cluster."))]));
  }

  function cellLabel(seg) {
    return seg.first === seg.last ? String(seg.first) : seg.first + "–" + seg.last;
  }

  function grid(run) {
    const cells = run.grid.map((seg) => {
      const what = seg.retried ? seg.state + " after a retry" : seg.state;
      const title = (seg.count === 1 ? "frame " : "frames ") + cellLabel(seg) + ": " + what +
        (seg.count > 1 ? " (" + seg.count + " frames)" : "") + (seg.message ? "\n" + seg.message : "");
      return el("div", {class: "cell " + cls(seg.state) + (seg.retried ? " retried" : ""), title,
                        style: {flexGrow: String(Math.min(seg.count, 40))}}, cellLabel(seg));
    });
    return el("div", {class: "grid", "aria-label": "frames"}, cells);
  }

  function stepsTable(run) {
    return el("table", null,
      el("thead", null, el("tr", null, el("th", null, "Step"), el("th", null, "State"),
        el("th", {class: "num"}, "Attempts"), el("th", null, "Started"), el("th", {class: "num"}, "Duration"),
        el("th", null, "Message"))),
      el("tbody", null, run.steps.map((step) => el("tr", null,
        el("td", {class: "name"}, step.name), el("td", null, badge(step.state)),
        el("td", {class: "num"}, step.attempts || ""), el("td", {class: "time"}, clock(step.start)),
        el("td", {class: "num"}, seconds(step.duration)), el("td", {class: "msg"}, step.message || "")))));
  }

  function recordsTable(run) {
    if (!run.records.length) return el("p", {class: "note"}, "Every frame reported so far is a plain success.");
    return el("table", {id: "frame-records"},
      el("thead", null, el("tr", null, el("th", {class: "num"}, "Frame"), el("th", null, "State"),
        el("th", {class: "num"}, "Attempts"), el("th", {class: "num"}, "Duration"), el("th", null, "Message"))),
      el("tbody", null, run.records.map((r) => el("tr", {"data-frame": r.index},
        el("td", {class: "num"}, r.index),
        el("td", null, badge(r.state === "Success" && r.attempts > 1 ? "Retried" : r.state)),
        el("td", {class: "num"}, r.attempts), el("td", {class: "num"}, seconds(r.duration)),
        el("td", {class: "msg"}, r.message)))));
  }

  function renderRun(run) {
    const panel = document.getElementById("run");
    panel.hidden = false;
    const params = Object.entries(run.parameters).map(([k, v]) => [el("dt", null, k), el("dd", {class: "path"},
      text(v))]);
    const kept = run.records_kept > run.records.length ?
      el("p", {class: "note"}, "Showing the first " + run.records.length + " of " + run.records_kept +
        " frame records.") : null;
    const dropped = Object.values(run.dropped).reduce((a, b) => a + b, 0);
    panel.replaceChildren(...[
      el("h2", null, "Run " + run.run, badge(run.state)),
      run.message ? el("div", {class: (run.state === "Cancelled" ? "stopped" : "failure") + " msg"},
        run.message) : null,
      el("dl", null,
        el("dt", null, "input"), el("dd", {class: "path"}, text(run.parameters.url)),
        run.batch ? [el("dt", null, "batch"), el("dd", null, run.batch)] : null,
        el("dt", null, "output"), el("dd", {class: "path"}, text(run.out)),
        el("dt", null, "started"), el("dd", null, clock(run.start)),
        el("dt", null, "duration"), el("dd", null, seconds(elapsed(run, run.now)))),
      el("h2", null, "Frames: " + frameLine(run.frames) +
        (run.frames.total === null ? " (the count is known once split has run)" : "")),
      grid(run),
      run.grid_truncated ? el("p", {class: "note"}, "The grid shows the first " + run.grid.length +
        " ranges; the counts above are exact.") : null,
      el("p", {class: "note"}, "A box per frame that needs a look, a bar per range of alike frames. " +
        "Hover for the state and the message."),
      dropped ? el("p", {class: "note"}, dropped + " frame records were not kept " +
        "(daskgif.dashboard.max-frame-records is " + run.records_kept + "); the counts are exact.") : null,
      el("h3", null, "Frames that were not a plain success"), kept, recordsTable(run),
      el("h2", null, "Steps"), stepsTable(run),
      el("h2", null, "Parameters"), el("dl", null, params.flat())].filter(Boolean));
  }

  async function getJSON(path) {
    const response = await fetch(base + path, {cache: "no-store", credentials: "same-origin"});
    if (!response.ok && response.status !== 404) throw new Error("HTTP " + response.status);
    return [response.status, await response.json()];
  }

  let timer = null;
  async function poll(now) {
    clearTimeout(timer);
    const status = document.getElementById("status");
    try {
      const [, data] = await getJSON("/api/runs.json");
      if (!selected && data.runs.length) selected = data.runs[0].run;
      renderRuns(data);
      if (selected) {
        const [code, run] = await getJSON("/api/runs/" + encodeURIComponent(selected) + ".json");
        if (code === 404) {
          document.getElementById("run").hidden = true;
          selected = null;
        } else {
          const key = JSON.stringify(Object.assign({}, run, {now: 0}));
          if (key !== lastDetail || run.end === null) { renderRun(run); lastDetail = key; }
        }
      }
      status.className = "note";
      status.textContent = data.runs.length + " run(s) kept (at most " + data.max_runs +
        "). Last update " + new Date().toLocaleTimeString() + ".";
    } catch (error) {
      status.className = "error";
      status.textContent = "Cannot reach the scheduler (" + error.message + "); retrying.";
    } finally {
      timer = setTimeout(poll, 1000);
    }
  }

  window.addEventListener("hashchange", () => {
    selected = decodeURIComponent(location.hash.replace(/^#/, "")) || null;
    poll(true);
  });
  poll(true);
})();
