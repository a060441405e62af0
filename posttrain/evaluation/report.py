"""report.html: one self-contained page a person reads to see what a pipeline run did.

It shows each training stage's curves (from trainer_log.jsonl), each eval
stage's figures as a table and bar charts, the first prompts answered by
every model side by side, and the run's resolved config and versions. The
file holds everything (CSS inline, charts as PNG data URIs), so it can be
mailed or opened offline. Every text that comes from data or a model is
HTML-escaped: model outputs are untrusted.

An eval stage writes `<run>/<stage>/report.html` (the training stages before
it and that evaluation) and `<run>/report.html` (the whole run) when it
finishes; the pipeline rewrites the run's at its end; `posttrain report`
rebuilds either from a run directory. This module reads the run into plain
dicts; report_html renders them and plots draws the charts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from posttrain.data.io import atomic_path
from posttrain.errors import PosttrainError
from posttrain.evaluation import report_html as html
from posttrain.evaluation.compare import figures
from posttrain.runs.layout import model_label
from posttrain.runs.manifest import read_manifest

DEFAULT_EXAMPLES = 8
REPORT = "report.html"
log = logging.getLogger("posttrain")


def write_report(run_dir, out=None, *, eval_stage: str | None = None, current: dict | None = None,
                 examples: int = DEFAULT_EXAMPLES) -> Path:
    """Write the run's report (or one eval stage's) atomically; return its path."""
    run_dir = Path(run_dir)
    page = build_report(run_dir, eval_stage=eval_stage, current=current, examples=examples)
    out = Path(out) if out else (run_dir / eval_stage if eval_stage else run_dir) / REPORT
    if out.is_dir():
        out = out / REPORT
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def write_after_eval(stage_dir, combined: dict) -> list[Path]:
    """The reports an eval stage leaves as it finishes: its own and the run's."""
    stage_dir = Path(stage_dir)
    current = {stage_dir.name: combined}
    written = [_quietly(stage_dir.parent, eval_stage=stage_dir.name, current=current),
               _quietly(stage_dir.parent, current=current)]
    return [path for path in written if path]


def refresh_run_report(run_dir) -> Path | None:
    """The run's report, rebuilt at the end of a run (stages after the last evaluation included); None on failure."""
    return _quietly(run_dir)


def _quietly(run_dir, **kwargs) -> Path | None:
    try:
        return write_report(run_dir, **kwargs)
    except Exception as e:  # noqa: BLE001 - predictions and metrics are already written; a report is extra
        log.warning("%s: report.html not written (%s: %s); the evaluation's results are kept, and "
                    "`posttrain report %s` builds it again", run_dir, type(e).__name__, e, run_dir)
        return None


def build_report(run_dir, *, eval_stage: str | None = None, current: dict | None = None,
                 examples: int = DEFAULT_EXAMPLES) -> str:
    """The HTML of a run's report; with `eval_stage`, of that stage and the training stages before it.

    `current` maps an eval stage that is finishing to its combined metrics, which are not on disk yet."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PosttrainError(f"{run_dir}: no such directory; give a run directory (the output_dir of a pipeline)")
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise PosttrainError(f"{run_dir}: no manifest.json; not a posttrain run directory "
                             "(give the output_dir of a pipeline that has run)")
    everything = [_stage(run_dir, name, manifest, current or {})
                  for name in manifest.get("stage_order") or manifest.get("stages") or []]
    shown = everything
    if eval_stage is not None:
        names = [s["name"] for s in everything]
        if eval_stage not in names or everything[names.index(eval_stage)]["type"] != "eval":
            evals = ", ".join(s["name"] for s in everything if s["type"] == "eval") or "none"
            raise PosttrainError(f"{run_dir}: no eval stage {eval_stage!r} (its eval stages: {evals})")
        at = names.index(eval_stage)
        shown = [s for s in everything[:at] if s["type"] != "eval"] + [everything[at]]
    title = str(manifest.get("name") or run_dir.name) + (f" · {eval_stage}" if eval_stage else "")
    evaluations = [s for s in shown if s["type"] == "eval"]
    return html.page(title, [
        html.header(title, run_dir, manifest), html.summary(shown, evaluations),
        html.training([s for s in shown if s["type"] not in ("eval", "?")]),
        *[html.evaluation(s, _examples(run_dir / s["name"], s["figures"], examples)) for s in evaluations],
        html.footer(_pipeline_yaml(manifest, everything, run_dir), manifest)])


def _stage(run_dir: Path, name: str, manifest: dict, current: dict) -> dict:
    """What the report needs of one stage, read from its directory; what is missing stays empty."""
    stage_dir = run_dir / name
    entry = manifest.get("stages", {}).get(name, {})
    config = _read_yaml(stage_dir / "config.yaml")
    declared = config.get("stage") if isinstance(config.get("stage"), dict) else {}
    info = {"name": name, "type": entry.get("type") or declared.get("type") or "?",
            "status": "done" if name in current else entry.get("status", "pending"),
            "seconds": entry.get("seconds"), "error": entry.get("error"), "config": config, "log": None,
            "log_path": stage_dir / "trainer_log.jsonl"}
    if info["type"] == "eval":
        combined = current.get(name) or _read_json(stage_dir / "metrics.json") or _partial(stage_dir, declared)
        info["figures"] = {m: f for m, f in (combined.get("figures") or {}).items() if isinstance(f, dict)}
        info["models"] = combined.get("models") or {}
        info["intervals"] = combined.get("intervals") or {}
        info["comparisons"] = combined.get("comparisons") or []
    elif info["log_path"].is_file():
        info["log"] = _read_jsonl(info["log_path"])
    return info


def _partial(stage_dir: Path, declared: dict) -> dict:
    """An eval stage that stopped part way: the figures of the models it finished."""
    found = {}
    for label in (model_label(str(ref)) for ref in declared.get("models") or []):
        document = _read_json(stage_dir / label / "metrics.json")
        if isinstance(document.get("metrics"), dict):
            found[label] = figures(document["metrics"])
    return {"figures": found}


def _examples(stage_dir: Path, by_model: dict, limit: int) -> list[dict]:
    """The first `limit` prompts, each with its reference and every model's output and scores."""
    rows: dict[tuple, dict] = {}
    for model in by_model:
        path = stage_dir / model / "predictions.jsonl"
        for i, row in enumerate(_read_jsonl(path)):
            key = (str(row.get("path")), row.get("line", i))
            if key not in rows and len(rows) < limit:
                rows[key] = {"prompt": row.get("prompt"), "reference": row.get("reference"),
                             "ground_truth": row.get("ground_truth"), "where": key, "outputs": {}}
            if key in rows:
                rows[key]["outputs"][model] = row
    return list(rows.values())


def _pipeline_yaml(manifest: dict, stages: list[dict], run_dir: Path) -> str:
    """The pipeline as it ran: its settings and every stage's resolved config (each <stage>/config.yaml)."""
    configs = [s["config"] for s in stages if s["config"]]
    settings = {k: v for k, v in (configs[0] if configs else {}).items() if k not in ("stage", "input_model")}
    base = next((c.get("input_model") for c in configs if (c.get("stage") or {}).get("model") in (None, "base")), None)
    document = {"name": manifest.get("name"), **({"model": base} if base else {}), "output_dir": str(run_dir),
                **settings, "stages": [c.get("stage") for c in configs]}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _read_jsonl(path: Path) -> list[dict]:
    """The objects of a JSON-lines file; a line cut by a kill is skipped, as training.logs.read_log does (which
    is not imported here: it pulls in transformers, seconds of import for a command that only reads files)."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    rows.append(row)
    except OSError:
        return []
    return rows


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _read_yaml(path: Path) -> dict:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return document if isinstance(document, dict) else {}
