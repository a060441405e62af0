"""What a run page shows of one stage beyond its progress: the resolved config it ran with, its error and where
its log is, an eval stage's tables (figures, 95 % intervals, comparisons) and its generations side by side, and
the diff of two runs' configs for the compare view.

Like watch.py it reads only what every pipeline writes (<stage>/config.yaml, <stage>/trainer_log.jsonl,
<eval>/metrics.json, <eval>/<model>/predictions.jsonl), opens nothing outside the run directory it is given, and
caps what it reads, so a page over a huge eval stays quick. Stdlib only.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from posttrain.runs.manifest import stage_states

MAX_CONFIG_BYTES = 256 * 1024
MAX_GENERATIONS = 12  # prompts shown side by side; the report and predictions.jsonl have the rest
MAX_TEXT = 4000  # characters of one prompt or output


def _inside(run_dir: Path, *parts: str) -> Path | None:
    """run_dir/parts, or None when it would leave the run directory (a stage or model named '..' by hand)."""
    path = run_dir.joinpath(*parts)
    try:
        path.resolve().relative_to(run_dir.resolve())
    except ValueError:
        return None
    return path


def _text(path: Path | None, limit: int = MAX_CONFIG_BYTES) -> str | None:
    if path is None or not path.is_file():
        return None
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    text = data[:limit].decode("utf-8", errors="replace")
    return text + "\n… (cut)" if len(data) > limit else text


def stage_details(run_dir, name: str) -> dict | None:
    """A stage's resolved config, error, log location and, for an eval stage, its tables and generations; None
    when the run has no stage of that name."""
    run_dir = Path(run_dir)
    row = next((row for row in stage_states(run_dir) if row["name"] == name), None)
    stage_dir = _inside(run_dir, name) if row else None
    if stage_dir is None:
        return None
    log = stage_dir / "trainer_log.jsonl"
    details = {"name": name, "type": row.get("type"), "status": row.get("status"),
               "config": _text(stage_dir / "config.yaml"), "error": row.get("error"),
               "log": str(log) if log.is_file() else None, "output": row.get("output")}
    if row.get("type") == "eval":
        details.update(eval_tables(stage_dir), generations=generations(run_dir, stage_dir))
    return details


def eval_tables(stage_dir: Path) -> dict:
    """An eval stage's metric names, each model's figures and 95 % intervals, and its comparisons (each model
    against its input and the base), as metrics.json has them; empty before the stage has written it."""
    try:
        results = json.loads((stage_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(results, dict):
        return {}
    return {key: results[key] for key in ("metric_names", "figures", "intervals", "comparisons") if key in results}


def generations(run_dir: Path, stage_dir: Path, limit: int = MAX_GENERATIONS) -> dict:
    """The first `limit` prompts of an eval stage and each model's output for them, in the stage's model order:
    {"models": [...], "rows": [{"prompt", "reference", "outputs": {model: text}}]}."""
    models, rows = [], {}
    for model_dir in sorted(p for p in stage_dir.iterdir() if p.is_dir()) if stage_dir.is_dir() else []:
        path = _inside(run_dir, stage_dir.name, model_dir.name, "predictions.jsonl")
        if path is None or not path.is_file():
            continue
        models.append(model_dir.name)
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, line in zip(range(limit), f):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                entry = rows.setdefault(i, {"prompt": _prompt(record.get("prompt")),
                                            "reference": _short(record.get("reference")), "outputs": {}})
                entry["outputs"][model_dir.name] = _short(record.get("output"))
    order = _model_order(stage_dir)
    models.sort(key=lambda m: order.index(m) if m in order else len(order))
    return {"models": models, "rows": [rows[i] for i in sorted(rows)]}


def _model_order(stage_dir: Path) -> list[str]:
    try:
        return list(json.loads((stage_dir / "metrics.json").read_text(encoding="utf-8"))["figures"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _short(value) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " … (cut)"


def _prompt(prompt) -> str | None:
    """A chat prompt as 'role: content' lines; a plain one as it is."""
    if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
        return _short("\n".join(f"{m.get('role')}: {m.get('content')}" for m in prompt))
    return _short(prompt)


def config_diff(run_a, run_b) -> list[dict]:
    """Each stage either run has, with the unified diff of its resolved config.yaml between the two (no lines
    when they are the same): [{"stage", "in": [runs that have it], "diff": [lines]}]."""
    run_a, run_b = Path(run_a), Path(run_b)
    names_a = [row["name"] for row in stage_states(run_a)]
    names_b = [row["name"] for row in stage_states(run_b)]
    out = []
    for name in names_a + [n for n in names_b if n not in names_a]:
        texts = [_text(_inside(run, name, "config.yaml")) if name in names else None
                 for run, names in ((run_a, names_a), (run_b, names_b))]
        diff = difflib.unified_diff((texts[0] or "").splitlines(), (texts[1] or "").splitlines(),
                                    f"{run_a.name}/{name}/config.yaml", f"{run_b.name}/{name}/config.yaml",
                                    lineterm="", n=2)
        out.append({"stage": name, "in": [i for i, names in enumerate((names_a, names_b)) if name in names],
                    "written": [text is not None for text in texts], "diff": list(diff)})
    return out
