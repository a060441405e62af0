// posttrain ui: the run list with launches (/), a run live (?run=ID), and runs compared (?compare=ID&compare=ID).
// Everything a run wrote goes in with textContent, never as markup: names, errors, configs and model outputs
// are the run's own. Each view polls its JSON every 2 s; a curve only gains points (logs are read on from an
// offset), so a page follows a run for as long as it is open.
"use strict";

const POLL_MS = 2000;
const SERIES = [  // [trainer_log key, label, axis]
  ["loss", "train loss", "y"], ["eval_loss", "eval loss", "y"], ["reward", "total reward", "y"],
  ["lr", "learning rate", "lr"],
];
const COLOURS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700", "#bf3989", "#1b7c83", "#6e7781"];
const DASHES = [[], [6, 3], [2, 2], [10, 3, 2, 3]];

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function cell(row, text, cls) {
  const td = el("td", text, cls);
  row.appendChild(td);
  return td;
}
function headRow(table, names) {
  const row = table.insertRow();
  for (const name of names) row.appendChild(el("th", name));
}
function figure(value) {
  return typeof value === "number" ? value.toPrecision(4) : "";
}
function interval(pair) {
  return Array.isArray(pair) && pair.length === 2 ? "[" + figure(pair[0]) + ", " + figure(pair[1]) + "]" : "";
}
function runLabel(run) {
  const parts = run.path.split("/");
  return parts[parts.length - 1] === run.name ? run.name : run.name + " (" + parts[parts.length - 1] + ")";
}
async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin"});
  if (!response.ok) throw new Error(await problem(response));
  return response.json();
}
async function problem(response) {
  try {
    const body = await response.json();
    return body.detail || body.error || response.statusText;
  } catch (e) {
    return response.status + " " + response.statusText;
  }
}

// ---- acting: launch, stop, resume need the token, which the start-up URL put in a cookie, or one typed here
async function act(url, body) {
  const headers = {"content-type": "application/json"};
  const token = sessionStorage.getItem("posttrain-token");
  if (token) headers.authorization = "Bearer " + token;
  const response = await fetch(url, {method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body)});
  if (response.status === 401) document.getElementById("token-box").hidden = false;
  if (!response.ok) throw new Error(await problem(response));
  return response.json();
}
function say(text, bad) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = bad ? "failed" : "muted";
}
async function acting(url, body) {
  try {
    const answer = await act(url, body);
    say(url.slice(4) + ": " + JSON.stringify(answer.stopped || answer.id || "ok"));
    return answer;
  } catch (e) {
    say(e.message, true);
  }
}
function setupToken() {
  document.getElementById("token-save").onclick = () => {
    sessionStorage.setItem("posttrain-token", document.getElementById("token").value.trim());
    document.getElementById("token-box").hidden = true;
    say("token kept for this tab");
  };
}

// ---- charts
const charts = {};  // key -> {chart, offsets: {source: byte offset}, seen: set of series keys}
function chartFor(key, title, parent) {
  if (charts[key]) return charts[key];
  const box = el("div", null, "chart");
  box.dataset.chart = key;
  box.appendChild(el("h3", title));
  const canvas = el("canvas");
  box.appendChild(canvas);
  parent.appendChild(box);
  const chart = new Chart(canvas, {
    type: "line", data: {datasets: []},
    options: {
      animation: false, parsing: false, normalized: true,
      scales: {x: {type: "linear", title: {display: true, text: "step"}},
               y: {type: "linear", position: "left"},
               lr: {type: "linear", position: "right", display: "auto", grid: {drawOnChartArea: false}}},
      plugins: {legend: {position: "bottom"}},
    },
  });
  charts[key] = {chart, offsets: {}, box};
  return charts[key];
}
function seriesKeys(rows) {
  const keys = SERIES.slice();
  for (const row of rows) {
    for (const key of Object.keys(row)) {
      if (key.startsWith("rewards/") && key.endsWith("/mean") && !keys.some(k => k[0] === key)) {
        keys.push([key, key.slice(8, -5) + " (mean reward)", "y"]);
      }
    }
  }
  return keys;
}
// rows of one source (a run's stage) into a chart; `prefix` and `style` tell runs apart on a compare chart
function addRows(entry, source, rows, prefix, style) {
  const chart = entry.chart;
  for (const [key, label, axis] of seriesKeys(rows)) {
    const points = rows.filter(r => typeof r[key] === "number" && typeof r.current_steps === "number")
                       .map(r => ({x: r.current_steps, y: r[key]}));
    if (!points.length) continue;
    let set = chart.data.datasets.find(d => d.key === key && d.source === source);
    if (!set) {
      const n = chart.data.datasets.filter(d => d.source === source).length;
      // a series keeps its colour on every chart and page load (loss blue, eval loss red...); on a compare
      // chart the colour is the run's, and the dash tells the series apart
      const index = SERIES.findIndex(k => k[0] === key);
      const colour = COLOURS[(style ? style.run : index >= 0 ? index : SERIES.length + n) % COLOURS.length];
      set = {key, source, label: (prefix || "") + label, yAxisID: axis, data: [], borderColor: colour,
             backgroundColor: colour, borderDash: style ? DASHES[n % DASHES.length] : [],
             pointRadius: key.startsWith("eval") ? 3 : 0, borderWidth: 1.5};
      chart.data.datasets.push(set);
    }
    set.data.push(...points);
  }
  chart.update("none");
}
// a stage with a trainer log to draw: one that has logged a step, or a training stage that runs (an eval or
// export stage, the two with TRAINS = False in posttrain/stages, logs no steps)
function logs(stage) {
  return Boolean(stage.progress) || (stage.status === "running" && !["eval", "export"].includes(stage.type));
}
async function follow(entry, source, runId, stage, prefix, style) {
  const offset = entry.offsets[source] || 0;
  const log = await getJSON("api/log?id=" + encodeURIComponent(runId) + "&stage=" + encodeURIComponent(stage) +
                            "&offset=" + offset);
  if (log.offset < offset) {  // the log started again (a resumed stage): so do its curves
    entry.chart.data.datasets = entry.chart.data.datasets.filter(d => d.source !== source);
  }
  entry.offsets[source] = log.offset;
  if (log.rows.length) addRows(entry, source, log.rows, prefix, style);
}

// ---- the stages table, shared by the list and a run's page
function stagesTable(run) {
  const table = el("table", null, "stages");
  headRow(table, ["stage", "type", "state", "progress", "seconds", "headline"]);
  for (const stage of run.stages) {
    const row = table.insertRow();
    row.dataset.stage = stage.name;
    cell(row, stage.name);
    cell(row, stage.type || "");
    cell(row, stage.status, "state " + stage.status);
    const progress = cell(row, "");
    if (stage.progress) {
      const bar = el("span", null, "bar");
      const fill = el("span");
      fill.style.width = Math.min(100, stage.progress.percentage || 0) + "%";
      bar.appendChild(fill);
      progress.appendChild(bar);
      progress.appendChild(document.createTextNode(
        " " + stage.progress.step + " / " + stage.progress.total +
        (stage.status === "running" && stage.progress.remaining ? ", " + stage.progress.remaining + " left" : "")));
    }
    cell(row, stage.seconds === undefined ? "" : String(stage.seconds));
    const head = stage.headline;
    cell(row, stage.error ? stage.error : head ? head.name + ": " + figure(head.value) : "",
         stage.error ? "failed" : "");
  }
  return table;
}
function runTitle(run, link) {
  const title = el("h2");
  if (link) {
    const a = el("a", run.name);
    a.href = "?run=" + encodeURIComponent(run.id);
    title.appendChild(a);
  } else {
    title.appendChild(document.createTextNode(run.name));
  }
  title.appendChild(document.createTextNode("  "));
  title.appendChild(el("span", run.path, "muted"));
  return title;
}

// ---- the list: every run, a checkbox each to compare, and the launch form with the launches' logs
const picked = new Set();
function renderList(data) {
  document.getElementById("roots").textContent = "under " + data.roots.join(", ");
  const box = document.getElementById("runs");
  box.replaceChildren();
  if (!data.runs.length) {
    box.appendChild(el("p", "No runs yet. Start one below, or with posttrain run RECIPE.yaml in a terminal; " +
                            "it shows up here by itself."));
  }
  for (const run of data.runs) {
    const title = runTitle(run, true);
    const pick = el("input", null, "pick no-print");
    pick.type = "checkbox";
    pick.checked = picked.has(run.id);
    pick.dataset.run = run.id;
    pick.title = "compare this run";
    pick.onchange = () => { pick.checked ? picked.add(run.id) : picked.delete(run.id); showCompare(); };
    title.prepend(pick);
    box.appendChild(title);
    if (run.error) {
      box.appendChild(el("p", run.error, "failed"));
      continue;
    }
    box.appendChild(stagesTable(run));
  }
  showCompare();
}
function showCompare() {
  const button = document.getElementById("compare");
  button.disabled = picked.size < 2;
  button.textContent = "Compare " + (picked.size || "") + " runs";
}
const launchLogs = {};  // launch id -> {offset, pre}
async function renderLaunches() {
  const data = await getJSON("api/launches");
  const select = document.getElementById("recipe-list");
  if (select.options.length !== data.recipes.length) {
    select.replaceChildren(...data.recipes.map(name => el("option", name)));
    if (data.recipes.includes("quickstart.yaml")) select.value = "quickstart.yaml";
  }
  document.getElementById("recipes-dir").textContent = data.recipes_dir;
  const box = document.getElementById("launches");
  for (const launch of data.launches.slice(0, 5)) {
    let entry = launchLogs[launch.id];
    if (!entry) {
      const details = el("details", null, "launch");
      details.dataset.launch = launch.id;
      details.appendChild(el("summary"));
      const pre = el("pre", "", "log");
      details.appendChild(pre);
      box.appendChild(details);
      entry = launchLogs[launch.id] = {offset: 0, pre, details};
    }
    entry.details.dataset.state = launch.state;
    const summary = entry.details.querySelector("summary");
    summary.replaceChildren(el("span", launch.state, "state " + stateClass(launch.state)),
                            document.createTextNode(" " + launch.recipe + " " + launch.overrides.join(" ") +
                                                    "  → " + launch.run_dir + "  (" + launch.log + ")"));
    if (entry.details.open || ["validating", "running"].includes(launch.state)) {
      const log = await getJSON("api/launch/log?launch=" + encodeURIComponent(launch.id) + "&offset=" + entry.offset);
      entry.offset = log.offset;
      entry.pre.textContent = (entry.pre.textContent + log.text).slice(-20000);
    }
  }
}
function stateClass(state) {
  return {validating: "running", stopped: "interrupted", invalid: "failed", ended: "pending"}[state] || state;
}
function setupLaunch() {
  document.getElementById("launch-form").onsubmit = async (event) => {
    event.preventDefault();
    const typed = document.getElementById("recipe").value.trim();
    const recipe = typed || document.getElementById("recipe-list").value;
    const overrides = document.getElementById("overrides").value.split("\n").map(s => s.trim()).filter(Boolean);
    const launch = await acting("api/launch", {recipe, overrides});
    if (launch) {
      say("started " + launch.id + ": posttrain validate, then posttrain run; its output is below");
      renderLaunches();
    }
  };
}

// ---- a run's page: stages, stop and resume, curves, and each stage's details
const detailStatus = {};  // stage -> the status its details were fetched at
function renderRun(run) {
  document.getElementById("roots").textContent = "";
  const box = document.getElementById("runs");
  box.replaceChildren(runTitle(run, false));
  if (run.error) {
    box.appendChild(el("p", run.error, "failed"));
    return;
  }
  const running = run.stages.some(s => s.status === "running");
  const buttons = el("p", null, "no-print");
  const stop = el("button", "Stop (as Ctrl-C; resumable)");
  stop.id = "stop";
  stop.disabled = !running;
  stop.onclick = () => acting("api/stop", {id: run.id});
  const resume = el("button", "Resume");
  resume.id = "resume";
  resume.disabled = running || !run.resumable || run.stages.every(s => s.status === "done");
  resume.title = run.resumable ? "run the same command again: finished stages are skipped" :
                 "started from a terminal: run its command again there to resume";
  resume.onclick = () => acting("api/resume", {id: run.id});
  buttons.append(stop, " ", resume);
  box.appendChild(buttons);
  box.appendChild(stagesTable(run));
}
async function followRun(run) {
  const charts_box = document.getElementById("charts");
  for (const stage of run.stages) {
    if (logs(stage)) {
      await follow(chartFor(stage.name, stage.name, charts_box), "run", run.id, stage.name);
    }
    if (stage.status !== "pending" && detailStatus[stage.name] !== stage.status) {
      const details = await getJSON("api/stage?id=" + encodeURIComponent(run.id) + "&stage=" +
                                    encodeURIComponent(stage.name));
      detailStatus[stage.name] = stage.status;
      renderDetails(details);
    }
  }
}
function renderDetails(stage) {
  let section = document.querySelector('section[data-stage="' + CSS.escape(stage.name) + '"]');
  if (!section) {
    section = el("section", null, "stage");
    section.dataset.stage = stage.name;
    document.getElementById("details").appendChild(section);
  }
  section.replaceChildren(el("h2", stage.name + " (" + (stage.type || "") + ")"));
  if (stage.error) {
    section.appendChild(el("p", "failed: " + stage.error, "failed"));
  }
  if (stage.log) section.appendChild(el("p", "log: " + stage.log, "muted"));
  if (stage.figures) section.append(el("h3", "figures, each with its 95 % interval"), evalTable(stage));
  if (stage.comparisons && stage.comparisons.length) {
    section.append(el("h3", "each model against its input and the base, on the same prompts"), comparisonTable(stage));
  }
  if (stage.generations && stage.generations.rows.length) section.appendChild(generationTable(stage.generations));
  if (stage.config) {
    const config = el("details", null, "config");
    config.appendChild(el("summary", "resolved config (" + stage.name + "/config.yaml)"));
    config.appendChild(el("pre", stage.config));
    section.appendChild(config);
  }
}
function evalTable(stage) {
  const table = el("table", null, "eval");
  headRow(table, ["model", ...stage.metric_names.flatMap(m => [m, "95 % interval"])]);
  for (const [model, figures] of Object.entries(stage.figures)) {
    const row = table.insertRow();
    cell(row, model);
    for (const metric of stage.metric_names) {
      cell(row, figure(figures[metric]));
      cell(row, interval(((stage.intervals || {})[model] || {})[metric]), "muted");
    }
  }
  return table;
}
function comparisonTable(stage) {
  const table = el("table", null, "comparisons");
  headRow(table, ["model", "against", "metric", "difference", "95 % interval", "p", "verdict"]);
  for (const c of stage.comparisons) {
    for (const [metric, f] of Object.entries(c.figures || {})) {
      const row = table.insertRow();
      cell(row, c.model);
      cell(row, c.against + (c.relation ? " (" + c.relation + ")" : ""));
      cell(row, metric);
      cell(row, figure(f.difference));
      cell(row, interval(f.interval), "muted");
      cell(row, figure(f.p_value));
      cell(row, f.better ? "better" : f.worse ? "worse" : "no clear change", f.better ? "done" : f.worse ? "failed" : "muted");
    }
  }
  return table;
}
function generationTable(generations) {
  const wrap = el("details", null, "generations");
  wrap.open = true;
  wrap.appendChild(el("summary", "generations, side by side (first " + generations.rows.length + " prompts)"));
  const table = el("table", null, "side");
  headRow(table, ["prompt", ...generations.models]);
  for (const row of generations.rows) {
    const tr = table.insertRow();
    const prompt = cell(tr, null, "text");
    prompt.appendChild(el("div", row.prompt, "clip"));
    if (row.reference) prompt.appendChild(el("div", "reference: " + row.reference, "muted"));
    for (const model of generations.models) cell(tr, null, "text").appendChild(el("div", row.outputs[model] || "", "clip"));
  }
  wrap.appendChild(table);
  return wrap;
}

// ---- compare: curves overlaid per stage, eval figures side by side, configs as diffs
async function renderCompare(ids) {
  const data = await getJSON("api/compare?" + ids.map(id => "id=" + encodeURIComponent(id)).join("&"));
  const box = document.getElementById("runs");
  box.replaceChildren(el("h2", "Comparing " + data.runs.map(runLabel).join(", ")));
  for (const [i, run] of data.runs.entries()) {
    const title = runTitle(run, true);
    title.style.borderLeft = "6px solid " + COLOURS[i % COLOURS.length];
    title.style.paddingLeft = "0.4rem";
    box.appendChild(title);
    if (!run.error) box.appendChild(stagesTable(run));
  }
  box.appendChild(metricsSideBySide(data.runs));
  renderDiffs(data);
  const charts_box = document.getElementById("charts");
  for (const [i, run] of data.runs.entries()) {
    for (const stage of run.stages) {
      if (!logs(stage)) continue;
      await follow(chartFor("compare:" + stage.name, stage.name, charts_box), run.id, run.id, stage.name,
                   runLabel(run) + ": ", {run: i});
    }
  }
}
function metricsSideBySide(runs) {
  const wrap = el("div");
  wrap.appendChild(el("h2", "Eval figures side by side"));
  const table = el("table", null, "metrics");
  headRow(table, ["eval stage", "model", "metric", ...runs.map(runLabel)]);
  const keys = [];
  for (const run of runs) {
    for (const [name, stage] of Object.entries(run.evals || {})) {
      for (const [model, figures] of Object.entries(stage.figures || {})) {
        for (const metric of Object.keys(figures)) {
          if (!keys.some(k => k[0] === name && k[1] === model && k[2] === metric)) keys.push([name, model, metric]);
        }
      }
    }
  }
  for (const [name, model, metric] of keys) {
    const row = table.insertRow();
    cell(row, name); cell(row, model); cell(row, metric);
    for (const run of runs) {
      const stage = (run.evals || {})[name] || {};
      const value = ((stage.figures || {})[model] || {})[metric];
      const td = cell(row, figure(value));
      const span = ((stage.intervals || {})[model] || {})[metric];
      if (span) td.appendChild(el("span", " " + interval(span), "muted"));
    }
  }
  if (!keys.length) wrap.appendChild(el("p", "No eval stage has finished in these runs yet.", "muted"));
  else wrap.appendChild(table);
  return wrap;
}
function renderDiffs(data) {
  const box = document.getElementById("details");
  box.replaceChildren(el("h2", "Configs"));
  const labels = Object.fromEntries(data.runs.map(r => [r.id, runLabel(r)]));
  for (const diff of data.diffs) {
    for (const stage of diff.stages) {
      const section = el("section", null, "diff");
      section.dataset.stage = stage.stage;
      section.appendChild(el("h3", stage.stage + ": " + labels[diff.against] + " against " + labels[diff.id]));
      if (!stage.diff.length) {
        section.appendChild(el("p", stage.written.every(Boolean) ? "the same config" :
                                    "no config.yaml written in " + (stage.written[0] ? labels[diff.id] : labels[diff.against]) +
                                    " yet", "muted"));
      } else {
        const pre = el("pre", null, "diff");
        for (const line of stage.diff) {
          const cls = line.startsWith("+") && !line.startsWith("+++") ? "added" :
                      line.startsWith("-") && !line.startsWith("---") ? "removed" : "";
          pre.appendChild(el("span", line + "\n", cls));
        }
        section.appendChild(pre);
      }
      box.appendChild(section);
    }
  }
}

// ---- which view, and its poll
const query = new URLSearchParams(location.search);
const chosen = query.get("run");
const compared = query.getAll("compare");
let pollProblem = false;  // the message shows a failed poll's problem, cleared by the next one that works
async function refresh() {
  try {
    if (compared.length) {
      document.body.dataset.view = "compare";
      await renderCompare(compared);
    } else if (chosen) {
      document.body.dataset.view = "run";
      const run = await getJSON("api/run?id=" + encodeURIComponent(chosen));
      renderRun(run);
      await followRun(run);
    } else {
      document.body.dataset.view = "list";
      renderList(await getJSON("api/runs"));
      await renderLaunches();
    }
    document.body.dataset.polled = String(Number(document.body.dataset.polled || 0) + 1);
    if (pollProblem) say("");  // e.g. a run launched a moment ago has now written its manifest
    pollProblem = false;
  } catch (e) {
    say(e.message, true);
    pollProblem = true;
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}
document.getElementById("compare").onclick = () => {
  location.search = [...picked].map(id => "compare=" + encodeURIComponent(id)).join("&");
};
// a printed run page has every folded config and table open
const unfold = () => document.querySelectorAll("details").forEach(d => { d.open = true; });
window.addEventListener("beforeprint", unfold);
matchMedia("print").addEventListener("change", e => { if (e.matches) unfold(); });
setupToken();
setupLaunch();
refresh();
