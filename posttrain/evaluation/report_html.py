"""The HTML of report.html: sections, tables, the side-by-side prompts and the page's CSS.

report.py reads a run directory into plain dicts; this module only renders
them, so what is shown and how it is read stay apart. Every text from data,
configs or models passes through `html.escape` here: model outputs are
untrusted and must never become markup.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

from posttrain.evaluation import plots
from posttrain.evaluation.compare import (ALL_ABOVE, NOT_ABOVE, baseline_text, difference_text, not_above_baselines,
                                          stage_baselines, verdict)
from posttrain.evaluation.uncertainty import lower_is_better


def page(title: str, sections: list[str]) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)} · posttrain report</title><style>{_CSS}</style></head>\n"
            f"<body><main>\n" + "\n".join(sections) + "\n</main></body></html>\n")


def best_models(by_model: dict[str, dict]) -> dict[str, list[str]]:
    """Per figure, the model(s) with the best value (lowest for errors, losses and unparsable shares)."""
    best = {}
    for name in dict.fromkeys(key for row in by_model.values() for key in row):
        values = {m: row[name] for m, row in by_model.items()
                  if isinstance(row.get(name), (int, float)) and math.isfinite(row[name])}
        if values:
            pick = min if lower_is_better(name) else max
            top = pick(values.values())
            best[name] = [m for m, v in values.items() if v == top]
    return best


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(json.dumps(value, ensure_ascii=False, default=str)) if value is not None else "–"
    return f"{value:.4g}"


def header(title: str, run_dir: Path, manifest: dict) -> str:
    facts = [f"run directory <code>{escape(str(run_dir))}</code>"]
    facts += [f"{key} {escape(str(manifest[key]))}" for key in ("created", "updated") if manifest.get(key)]
    if manifest.get("git_commit"):
        facts.append(f"git commit <code>{escape(str(manifest['git_commit'])[:12])}</code>")
    return f"<header><h1>{escape(title)}</h1><p class=meta>{' · '.join(facts)}</p></header>"


def _training_result(stage: dict) -> str:
    rows = stage["log"] or []
    parts = []
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if values:
            parts.append(f"{label} {values[0]:.4g} → {values[-1]:.4g}")
    rewards = [r["reward"] for r in rows if isinstance(r.get("reward"), (int, float))]
    if len(rewards) >= 5:  # the first and last fifths, as the pipeline's reward trend: one step is noise
        fifth = len(rewards) // 5
        parts.append(f"mean reward {sum(rewards[:fifth]) / fifth:.4g} (first fifth of steps) → "
                     f"{sum(rewards[-fifth:]) / fifth:.4g} (last fifth)")
    return "; ".join(parts) if rows else "no trainer_log.jsonl"


def summary(stages: list[dict], evaluations: list[dict]) -> str:
    lines = []
    for stage in evaluations:
        best = best_models(stage["figures"])
        if not best:
            lines.append(f"<li><b>{escape(stage['name'])}</b>: no results yet</li>")
            continue
        each = "; ".join(f"{escape(name)}: <b>{escape(', '.join(models))}</b> "
                         f"({_number(stage['figures'][models[0]][name])})" for name, models in best.items())
        lines.append(f"<li><b>{escape(stage['name'])}</b>, best on each metric: {each}</li>")
    table = ["<table class=stages><tr><th>stage</th><th>type</th><th>status</th><th>seconds</th><th>result</th></tr>"]
    for s in stages:
        result = (f"{len(s['figures'])} model(s) evaluated" if s["type"] == "eval" else _training_result(s))
        if s.get("error"):
            result = f"{result}; {s['error']}"
        table.append(f"<tr><td>{escape(s['name'])}</td><td>{escape(s['type'])}</td>"
                     f"<td class='status {escape(s['status'])}'>{escape(s['status'])}</td>"
                     f"<td class=num>{_number(s['seconds'])}</td><td>{escape(result)}</td></tr>")
    return ("<section><h2>Summary</h2>" + (f"<ul>{''.join(lines)}</ul>" if lines else "")
            + "".join(table) + "</table></section>")


def _charts(charts: list[tuple[str, str]], owner: str) -> str:
    return "<div class=charts>" + "".join(f'<figure><img alt="{escape(owner)}: {escape(title)}" src="{uri}"></figure>'
                                          for title, uri in charts) + "</div>"


def training(stages: list[dict]) -> str:
    if not stages:
        return ""
    parts = ["<section><h2>Training</h2>"]
    for stage in stages:
        parts.append(f"<h3>{escape(stage['name'])} <span class=tag>{escape(stage['type'])}</span></h3>")
        charts = plots.training_charts(stage["log"]) if stage["log"] else []
        if charts:
            parts.append(_charts(charts, stage["name"]))
        else:
            parts.append(f"<p class=note>No curves: {escape(str(stage['log_path'].name))} "
                         f"{'has no loss or reward logged' if stage['log'] else 'is missing'} "
                         f"(stage status: {escape(stage['status'])}).</p>")
    return "".join(parts) + "</section>"


def evaluation(stage: dict, examples: list[dict]) -> str:
    by_model, name = stage["figures"], stage["name"]
    parts = [f"<section><h2>Evaluation: {escape(name)}</h2>"]
    info = next(iter(stage["models"].values()), {}) if isinstance(stage["models"], dict) else {}
    if isinstance(info, dict) and info.get("count") is not None:
        generation = info.get("generation") or {}
        parts.append(f"<p class=meta>{escape(str(info['count']))} examples from "
                     f"{escape(', '.join(map(str, info.get('data') or [])))}; "
                     f"{'sampled' if generation.get('do_sample') else 'greedy'}, "
                     f"max_new_tokens {escape(str(generation.get('max_new_tokens')))}</p>")
    if not by_model:
        return "".join(parts) + "<p class=note>No results: the stage has not finished a model.</p></section>"
    best = best_models(by_model)
    columns = list(best)
    parts.append("<div class=scroll><table class=metrics><tr><th>model</th>"
                 + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>")
    intervals = stage.get("intervals") or {}
    baselines = stage_baselines(stage.get("models") or {})
    flagged = not_above_baselines(by_model, intervals, baselines)
    for model, row in by_model.items():
        cells = "".join(f"<td class='num{' best' if model in best[c] else ''}'>{_number(row.get(c))}"
                        f"{_interval(intervals.get(model, {}).get(c))}"
                        f"{'<br><span class=flag>not above baseline</span>' if model in flagged.get(c, ()) else ''}"
                        f"</td>" for c in columns)
        parts.append(f"<tr><th>{escape(model)}</th>{cells}</tr>")
    parts.append("</table></div>")
    for figure, models in flagged.items():
        named = "".join(f" <span class=flag>{escape(m)}</span>" for m in models)
        parts.append(f"<p class=baseline>{escape(baseline_text(figure, baselines[figure]))}; "
                     f"{escape(NOT_ABOVE) + ':' + named if models else escape(ALL_ABOVE)}</p>")
    parts.append("<p class=note>Best in each column in bold (lowest for errors and unparsable "
                 "shares, highest otherwise); in brackets, the 95 % bootstrap interval over the examples.</p>")
    if stage.get("comparisons"):
        parts.append(_comparisons(stage["comparisons"], columns))
    models = list(by_model)
    parts.append(_charts([(c, plots.bar_chart(c, models, [by_model[m].get(c) for m in models],
                                              {models.index(m) for m in best[c]})) for c in columns], name))
    if examples:
        parts.append(f"<h3>Side by side: the first {len(examples)} prompts</h3>")
        parts.extend(_example(i + 1, example, models) for i, example in enumerate(examples))
    return "".join(parts) + "</section>"


def _interval(bounds) -> str:
    if not bounds:
        return ""
    return f"<br><span class=ci>[{_number(bounds[0])}, {_number(bounds[1])}]</span>"


def _comparisons(comparisons: list[dict], columns: list[str]) -> str:
    """Each model against its input stage and the base; a stage that did not beat its input on the first figure
    by more than the noise is marked."""
    shown = [c for c in columns if any(c in comparison["figures"] for comparison in comparisons)]
    rows = []
    for comparison in comparisons:
        cells = []
        for column in shown:
            result = comparison["figures"].get(column)
            if result is None:
                cells.append("<td></td>")
                continue
            said = verdict(result)
            cells.append(f"<td class='num {said.replace(' ', '-')}'>{escape(difference_text(result))}"
                         f"<br><span class=ci>{said}</span></td>")
        headline = comparison["figures"].get(shown[0]) if shown else None
        mark = ""
        if comparison["relation"] == "input" and headline is not None and not headline["better"]:
            mark = " <span class=flag>did not beat its input</span>"
        rows.append(f"<tr><th>{escape(comparison['model'])}{mark}</th><td>{escape(comparison['against'])} "
                    f"({escape(comparison['relation'])})</td>{''.join(cells)}</tr>")
    return ("<h3>Each model against its input and the base</h3><div class=scroll><table class=metrics><tr>"
            "<th>model</th><th>against</th>" + "".join(f"<th>Δ {escape(c)}</th>" for c in shown) + "</tr>"
            + "".join(rows) + "</table></div><p class=note>Δ: the model minus the one it is compared with, on the "
            "same examples; in brackets the 95 % paired-bootstrap interval, and p from a paired permutation test. "
            "Better or worse means the interval excludes 0; a stage that is not better than its input on the "
            "first figure is flagged.</p>")


def _text(value) -> str:
    if isinstance(value, str):
        return value
    flat = json.dumps(value, ensure_ascii=False, default=str)
    return flat if len(flat) <= 100 else json.dumps(value, ensure_ascii=False, indent=1, default=str)


def _output(value) -> str:
    """A model's output, verbatim; an empty or blank one says so, else it would look like a missing cell."""
    if isinstance(value, str) and not value.strip():
        return f"<p class=note>{'empty output' if not value else f'only whitespace ({len(value)} characters)'}</p>"
    return f"<pre>{escape(_text(value))}</pre>"


def _example(number: int, example: dict, models: list[str]) -> str:
    prompt = example["prompt"] if isinstance(example["prompt"], list) else [{"role": "prompt",
                                                                               "content": example["prompt"]}]
    messages = "".join(f"<div class='msg {escape(str(m.get('role')))}'><span class=role>{escape(str(m.get('role')))}"
                       f"</span><pre>{escape(_text(m.get('content')))}</pre></div>"
                       if isinstance(m, dict) else f"<pre>{escape(_text(m))}</pre>" for m in prompt)
    if example["reference"] is not None:
        reference = ("reference", example["reference"])
    else:
        reference = ("ground truth", example["ground_truth"])
    where = f"{example['where'][0]}:{example['where'][1]}"
    cells = []
    for model in models:
        row = example["outputs"].get(model)
        if row is None:
            cells.append(f"<div class=output><div class=model>{escape(model)}</div><p class=note>no output</p></div>")
            continue
        scores = row.get("scores") if isinstance(row.get("scores"), dict) else {}
        chips = "".join(f"<span class=score>{escape(str(k))} <b>{_number(v)}</b></span>" for k, v in scores.items())
        cells.append(f"<div class=output><div class=model>{escape(model)}</div><div class=scores>{chips}</div>"
                     f"{_output(row.get('output'))}</div>")
    return (f"<article class=example><h4>#{number} <span class=where>{escape(where)}</span></h4>"
            f"<div class=prompt>{messages}</div>"
            f"<div class=reference><span class=role>{reference[0]}</span><pre>{escape(_text(reference[1]))}</pre></div>"
            f"<div class=outputs style='grid-template-columns: repeat({len(models)}, minmax(200px, 1fr))'>"
            f"{''.join(cells)}</div></article>")


def footer(pipeline_yaml: str, manifest: dict) -> str:
    versions = manifest.get("versions") if isinstance(manifest.get("versions"), dict) else {}
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in versions.items())
    commit = (f"<p>posttrain git commit: <code>{escape(str(manifest['git_commit']))}</code></p>"
              if manifest.get("git_commit") else "<p class=note>No git commit recorded.</p>")
    return (f"<section><h2>Config and versions</h2><details open><summary>The pipeline's resolved config "
            f"(YAML, from each stage's config.yaml)</summary><pre class=config>{escape(pipeline_yaml)}</pre></details>"
            f"<h3>Versions</h3><table class=versions>{rows}</table>{commit}</section>")


_CSS = """
body{margin:0;background:#f8fafc;color:#1f2937;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1240px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:28px;margin:0 0 4px}
h2{font-size:21px;margin:36px 0 12px;border-bottom:2px solid #e2e8f0;padding-bottom:4px}
h3{font-size:17px;margin:24px 0 8px}h4{margin:0 0 8px;font-size:15px}
.meta,.note,.where{color:#64748b;font-size:13px}.note{font-style:italic}
code,pre{font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
table{border-collapse:collapse;background:#fff;margin:8px 0}
th,td{border:1px solid #e2e8f0;padding:5px 10px;text-align:left}tr:first-child th{background:#f1f5f9}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.best{font-weight:700;color:#15803d}
.ci{font-size:12px;font-weight:400;color:#64748b}td.better{color:#15803d}td.worse{color:#b91c1c}
.flag{font-size:12px;font-weight:600;color:#fff;background:#b91c1c;border-radius:4px;padding:1px 6px}
.scroll{overflow-x:auto}.status.done{color:#15803d}.status.failed{color:#b91c1c}
.status.running,.status.interrupted{color:#b45309}
.tag{font-size:12px;font-weight:500;color:#475569;background:#e2e8f0;border-radius:4px;padding:1px 6px;margin-left:6px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:6px}
figure img{width:100%;display:block}
.example{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:14px 16px;margin:14px 0}
.msg,.reference{margin:0 0 8px}
.msg pre,.reference pre{max-height:14em;overflow:auto;background:#f8fafc;padding:6px 8px;border-radius:4px}
.msg.system pre{color:#64748b}.reference pre{background:#f0fdf4}
.role{display:block;font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:#64748b;margin-bottom:2px}
.outputs{display:grid;gap:10px;overflow-x:auto}
.output{border:1px solid #e2e8f0;border-radius:6px;padding:8px;min-width:0}
.output pre{max-height:16em;overflow:auto}.model{font-weight:700;margin-bottom:4px}
.scores{display:flex;flex-wrap:wrap;gap:4px;margin-bottom:6px}
.score{font-size:12px;background:#eff6ff;border-radius:4px;padding:1px 6px}
details{margin:8px 0}summary{cursor:pointer;font-weight:600}
pre.config{background:#fff;border:1px solid #e2e8f0;padding:10px}table.versions th{background:#f8fafc;font-weight:500}
"""
