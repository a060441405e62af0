"""The model card (README.md) of an exported model: what it is made of and, from a posttrain run, how it was made.

A served model loses the run directory it came from; the card keeps what a
reader needs to trust or reproduce it: base, adapters, dtype, versions, the
verification figures, and for a model from `<run>/<stage>/model` the
pipeline's stages (type, status, fingerprint), their data and metrics, and
any eval stage's comparison table. The front matter is Hugging Face's model
card metadata; `base_model` is written only for a hub id, since the Hub
rejects metadata naming a model it does not have.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from posttrain.config.schema import DataSpec
from posttrain.data.sources import content_fingerprint, resolve_sources
from posttrain.errors import PosttrainError
from posttrain.evaluation.compare import markdown_table
from posttrain.export.verify import TOLERANCE
from posttrain.runs.layout import run_of


def model_card(summary: dict, found, exclude_stage: str | None = None) -> str:
    meta = {"library_name": "transformers", "pipeline_tag": "text-generation",
            "tags": ["posttrain"] + (["lora", "merged"] if found.adapters else [])}
    if _hub_id(found.base):
        meta["base_model"] = found.base
    run = run_of(found.source)
    title = f"{run[2].get('name', run[0].name)} / {run[1]}" if run else Path(found.source.rstrip("/")).name
    rows = [("base model", f"`{found.base}`")]
    rows += [("adapter merged", f"`{a}` ({_lora(a)})") for a in found.adapters]
    rows += [("dtype", summary["dtype"]), ("exported", summary["exported"]),
             ("versions", ", ".join(f"{name} {_version(name)}" for name in ("posttrain", "transformers", "peft",
                                                                            "torch")))]
    check = summary.get("verify")
    if check:
        rows.append(("verified", f"largest logit difference {check['max_abs_diff']:.3g} against the unmerged "
                                 f"reference (tolerance {check['tolerance']:.3g} = {TOLERANCE[check['dtype']]:g} x "
                                 f"the largest logit, {check['prompts']} prompts, {check['positions']} positions)"))
    else:
        rows.append(("verified", "no (`posttrain export --verify` compares it with the unmerged model)"))
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "", f"# {title}", "",
             "Exported by posttrain from the model below"
             + (" with its LoRA adapter merged in." if found.adapters else "."), "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    if run:
        lines += run_section(*run, exclude_stage=exclude_stage)
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              'model = AutoModelForCausalLM.from_pretrained("<this directory>")',
              'tokenizer = AutoTokenizer.from_pretrained("<this directory>")', "```", "",
              "Served with an OpenAI-compatible API: `vllm serve <this directory>`.", ""]
    return "\n".join(lines)


def run_section(run_dir: Path, stage: str, manifest: dict, exclude_stage: str | None = None) -> list[str]:
    """The pipeline behind `<run_dir>/<stage>/model`: stages, data, metrics, evaluation tables."""
    stages = manifest.get("stages", {})
    order = [n for n in manifest.get("stage_order") or list(stages) if n != exclude_stage]
    made_of = lineage_stages(run_dir, stage, stages)
    lines = ["", f"## Pipeline `{manifest.get('name', run_dir.name)}`", "",
             f"From the run directory `{run_dir}` (stage `{stage}`), created {manifest.get('created', '?')}"
             + (f", posttrain at git commit `{manifest['git_commit']}`" if manifest.get("git_commit") else "") + ".",
             "", "| stage | type | status | fingerprint | in this model |", "| --- | --- | --- | --- | --- |"]
    for name in order:
        entry = stages.get(name, {})
        lines.append(f"| {name} | {entry.get('type', '')} | {entry.get('status', 'pending')} | "
                     f"`{entry.get('fingerprint', '')[:16]}` | {'yes' if name in made_of else ''} |")
    data = [row for name in order for row in _data_rows(run_dir, name)]
    if data:
        lines += ["", "### Data", "", "The content sha256 is of the files as they are at export time; the stage "
                  "fingerprint above covers their content when the stage ran.", "",
                  "| stage | field | path | format | content sha256 |", "| --- | --- | --- | --- | --- |"] + data
    metric_rows = [f"| {name} | {key} | {_number(value)} |" for name in order
                   if stages.get(name, {}).get("type") != "eval"
                   for key, value in (stages.get(name, {}).get("metrics") or {}).items()]
    if metric_rows:
        lines += ["", "### Metrics", "", "| stage | metric | value |", "| --- | --- | ---: |"] + metric_rows
    for name in order:
        table = _eval_table(run_dir / name) if stages.get(name, {}).get("type") == "eval" else None
        if table:
            lines += ["", f"### Evaluation `{name}`", "", table]
    return lines


def lineage_stages(run_dir: Path, stage: str, stages: dict) -> list[str]:
    """`stage` and the stages of the same run it was trained from, following each one's input model."""
    found = []
    while stage in stages and stage not in found:
        found.append(stage)
        parent = Path(str(stages[stage].get("input_model", "")))
        if parent.name != "model" or parent.parent.parent.resolve() != run_dir.resolve():
            break
        stage = parent.parent.name
    return found


def _data_rows(run_dir: Path, name: str) -> list[str]:
    config = run_dir / name / "config.yaml"
    if not config.is_file():
        return []
    stage = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("stage", {})
    rows = []
    for field_name in ("data", "eval_data"):
        for spec in stage.get(field_name) or []:
            try:
                sources = resolve_sources([DataSpec.model_validate(spec)])
            except (PosttrainError, ValueError, OSError) as e:
                rows.append(f"| {name} | {field_name} | {spec.get('path') or spec.get('dataset')} | | not readable "
                            f"now: {str(e).splitlines()[0]} |")
                continue
            for source in sources:
                here = Path(source.path).exists()
                digest = content_fingerprint([source])[:16] if here else "not found at export"
                rows.append(f"| {name} | {field_name} | `{source.path}` | {source.format or 'detected'} | "
                            f"{'`' + digest + '`' if here else digest} |")
    return rows


def _eval_table(stage_dir: Path) -> str | None:
    path = stage_dir / "metrics.json"
    if not path.is_file():
        return None
    figures = json.loads(path.read_text(encoding="utf-8")).get("figures") or {}
    return markdown_table(figures) if figures else None


def _lora(adapter: str) -> str:
    config = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    return f"LoRA r {config.get('r')}, alpha {config.get('lora_alpha')}"


def _hub_id(path: str) -> bool:
    return not Path(path).exists() and "/" in path and not path.startswith((".", "/", "~"))


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"
