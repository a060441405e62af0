"""The `type: eval` stage: base and earlier stages answer the same held-out prompts, scored the same way.

Each name in `models:` is `base` (the pipeline's model), an earlier stage
(its saved model; a LoRA stage's adapter is loaded on the base it names) or a
model directory. Each model is evaluated by posttrain.evaluation exactly as
`posttrain eval` would, into `<stage>/<model>/predictions.jsonl` and
`metrics.json`; the stage's own `metrics.json` holds every model's results
and their figures side by side, which the pipeline prints as a Markdown
table. The stage's fingerprint covers every listed model's fingerprint, so
retraining any of them reruns the evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.config import EvalStage, PipelineConfig
from posttrain.errors import ConfigError
from posttrain.evaluation.generation import GenerationSettings
from posttrain.stages import StageContext


def plan(stage: EvalStage, pipeline: PipelineConfig, output_dir=None) -> GenerationSettings:
    """The stage's generation settings, checked (the seed defaults to the pipeline's)."""
    return GenerationSettings(max_new_tokens=stage.max_new_tokens, batch_size=stage.batch_size,
                              temperature=stage.temperature, top_p=stage.top_p, do_sample=stage.do_sample,
                              seed=pipeline.seed if stage.seed is None else stage.seed,
                              num_samples=stage.num_samples)


def model_path(ref: str, pipeline: PipelineConfig) -> str:
    """Where a `models:` entry is: the pipeline's model, an earlier stage's saved model, or the directory named."""
    if ref == "base":
        return pipeline.model
    if ref in {s.name for s in pipeline.stages}:
        return str(Path(pipeline.output_dir) / ref / "model")
    return ref


def unknown_models(stage: EvalStage, pipeline: PipelineConfig) -> list[str]:
    """Each `models:` entry that is neither base, a stage, a model directory nor a hub id, as a problem line."""
    names = [s.name for s in pipeline.stages]
    problems = []
    for ref in stage.models:
        if ref == "base" or ref in names:
            continue
        path = Path(ref)
        hub_id = "/" in ref and not ref.startswith((".", "/")) and not path.exists()
        if hub_id or (path / "config.json").exists() or (path / "adapter_config.json").exists():
            continue
        earlier = [n for n in names[:names.index(stage.name)] if pipeline.stage(n).type != "eval"]
        problems.append(f"stages.{stage.name}.models: {ref!r} is neither base, an earlier stage "
                        f"({', '.join(earlier) or 'none'}) nor a model directory")
    return problems


def run(ctx: StageContext) -> dict:
    from posttrain.data.sources import resolve_sources
    from posttrain.evaluation import evaluate
    from posttrain.evaluation.compare import compare_models, figures
    from posttrain.evaluation.generation import adapter_base
    from posttrain.evaluation.metrics import parse as metric_names
    from posttrain.models.loading import is_adapter_dir

    stage, pipeline = ctx.stage, ctx.pipeline
    problems = unknown_models(stage, pipeline)
    if problems:
        raise ConfigError("\n".join(problems))
    settings = plan(stage, pipeline)
    _configure_search(ctx)
    sources = resolve_sources(stage.data)
    results, table, intervals, rows = {}, {}, {}, {}
    for ref in stage.models:
        path = model_path(ref, pipeline)
        model, adapter = (adapter_base(path), path) if is_adapter_dir(path) else (path, None)
        label = stage.label(ref)
        result = evaluate(model, sources, stage.metrics, ctx.stage_dir / label, adapter=adapter, limit=stage.limit,
                          settings=settings, template=stage.template or pipeline.template, dtype=pipeline.dtype,
                          trust_remote_code=pipeline.trust_remote_code,
                          attn_implementation=pipeline.attn_implementation, backend=stage.backend,
                          pass_threshold=stage.pass_threshold)
        results[label] = {"ref": ref, **result.metrics}
        table[label] = figures(result.metrics["metrics"])
        intervals[label] = result.metrics.get("intervals", {})
        rows[label] = result.rows
    names = metric_names(stage.metrics)
    combined = {"metric_names": stage.metrics, "data": [str(s.path) for s in sources], "models": results,
                "figures": table, "intervals": intervals,
                "comparisons": compare_models(comparison_pairs(stage, pipeline), rows, names, settings.seed)}
    from posttrain.evaluation.report import write_after_eval

    write_after_eval(ctx.stage_dir, combined)  # <stage>/report.html and the run's; a failure only warns
    return combined


def comparison_pairs(stage: EvalStage, pipeline: PipelineConfig) -> list[tuple[str, str, str]]:
    """(model, against, relation) for each evaluated model: against the nearest evaluated stage it was trained
    from (`input`), and against the base (`base`) when that is another model."""
    evaluated = {ref: stage.label(ref) for ref in stage.models}
    names = {s.name for s in pipeline.stages}
    pairs = []
    for ref, label in evaluated.items():
        if ref == "base":
            continue
        parent = (pipeline.stage(ref).model or "base") if ref in names else None
        while parent is not None and parent not in evaluated and parent in names:
            parent = pipeline.stage(parent).model or "base"
        if parent in evaluated:
            pairs.append((label, evaluated[parent], "input"))
        if "base" in evaluated and parent != "base":
            pairs.append((label, evaluated["base"], "base"))
    return pairs


def _configure_search(ctx: StageContext) -> None:
    """Study-search rewards query what the stage names, else what the environment names, as in a GRPO stage;
    never what an earlier stage of the same process configured."""
    from posttrain.rewards import search

    stage = ctx.stage
    index = stage.search_index
    if stage.search_corpus:
        from posttrain.stages.grpo import corpus_index

        index = corpus_index(stage.search_corpus, ctx.stage_dir)
    search.configure(index=index, backend=stage.search_backend, cache=stage.search_cache)


def comparison(stage_dir: Path) -> str | None:
    """The Markdown tables of a finished eval stage, or None: the figures with their 95 % intervals (rows:
    models) and the baselines under them, then each model against its input stage and the base."""
    from posttrain.evaluation.compare import comparison_table, markdown_table, stage_baselines

    path = Path(stage_dir) / "metrics.json"
    if not path.exists():
        return None
    combined = json.loads(path.read_text(encoding="utf-8"))
    tables = markdown_table(combined.get("figures", {}), combined.get("intervals"),
                            stage_baselines(combined.get("models", {})))
    if combined.get("comparisons"):
        tables += "\n\n" + comparison_table(combined["comparisons"])
    return tables
