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
from typing import Literal

from pydantic import Field, field_validator, model_validator

from posttrain import machine
from posttrain.config.schema import DataSpec, PipelineConfig, StageConfig, as_list, one_search_source
from posttrain.data.sources import resolve_sources
from posttrain.errors import ConfigError
from posttrain.evaluation import evaluate, metrics
from posttrain.evaluation.compare import compare_models, comparison_table, figures, markdown_table, stage_baselines
from posttrain.evaluation.generation import GenerationSettings
from posttrain.evaluation.metrics import parse as metric_names
from posttrain.evaluation.report import write_after_eval
from posttrain.models.lineage import adapter_base
from posttrain.models.loading import is_adapter_dir
from posttrain.rewards import search
from posttrain.rewards.search.index import corpus_index
from posttrain.runs.layout import model_label
from posttrain.stages import StageContext
from posttrain.training import requirements


class Config(StageConfig):
    """Evaluation by generation: each of `models` answers the prompts of `data`, scored with `metrics`.

    `models` names `base` (the pipeline's model), earlier stages (their outputs; a LoRA stage's adapter on its
    base) or model directories. The stage trains nothing: it has no `model:` and no `trainer:`; the generation
    settings are its own fields.
    """

    type: Literal["eval"]
    models: list[str] = Field(default_factory=lambda: ["base"], min_length=1)
    data: list[DataSpec] = Field(min_length=1)
    metrics: list[str] = Field(min_length=1)
    max_new_tokens: int = Field(default=256, ge=1)
    batch_size: int = Field(default=8, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    do_sample: bool | None = None  # default: sample when a temperature above 0 or a top_p is given
    seed: int | None = None  # default: the pipeline's seed
    num_samples: int = Field(default=1, ge=1)  # answers sampled per prompt: mean@k and pass@k of each reward
    pass_threshold: float = 0.0  # an answer passes (pass@k) when its score is above this
    limit: int | None = Field(default=None, ge=1)  # at most this many examples in all (max_samples: per source)
    backend: Literal["auto", "hf", "vllm"] = "auto"  # auto: vLLM when it is installed and a CUDA GPU is present
    template: str | None = None
    # where reward:study_search* metrics run their queries, as in a GRPO stage
    search_index: str | None = None
    search_corpus: str | None = None
    search_backend: Literal["index", "ncbi"] | None = None
    search_cache: str | None = None

    _data_lists = field_validator("data", mode="before")(as_list)

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_list(cls, value):
        return [v.strip() for v in value.split(",")] if isinstance(value, str) else value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names):
        try:
            return metrics.parse(names)
        except ConfigError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _no_training_fields(self):
        if self.model is not None:
            raise ValueError("an eval stage lists the models it compares under `models:` (base, earlier stages, "
                             "model directories), not `model:`")
        if self.trainer:
            raise ValueError("an eval stage trains nothing and has no `trainer:`; its generation settings are "
                             "max_new_tokens, batch_size, temperature, top_p, do_sample, seed and num_samples")
        if self.num_samples > 1:
            try:  # the generation settings' own rule: k samples of greedy decoding are one answer k times
                GenerationSettings(temperature=self.temperature, top_p=self.top_p, do_sample=self.do_sample,
                                   num_samples=self.num_samples)
            except ConfigError as e:
                raise ValueError(str(e)) from None
            corpus = [name for name in self.metrics if name in ("bleu", "judge", *metrics.PAIR_METRICS)]
            if corpus:
                raise ValueError(f"num_samples {self.num_samples}: {', '.join(corpus)} is a figure over the whole "
                                 "file, not a score per answer; evaluate it in an eval stage with one sample")
        labels = [self.label(ref) for ref in self.models]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"models: {', '.join(twice)} named twice (each model's results go to "
                             "<stage>/<name>/)")
        return one_search_source(self)

    label = staticmethod(model_label)  # the folder a model's results go to


TRAINS = False
RECORD = None  # prompts with references in several record types; validate checks each source by its format
OUTPUT = "metrics.json"


def problems(stage, pipeline, launched: bool = False) -> list[str]:
    """The model loads to generate: the attention it asks for; and a vLLM backend needs a GPU and vLLM."""
    found = requirements.attention_problems(stage, pipeline, training=False)
    if stage.backend == "vllm":
        found.append(machine.needs_cuda_and("vllm", f"stages.{stage.name}.backend: vllm", "vLLM generates on the GPU",
                                            "Fix: backend: hf (or auto, which takes vLLM where it can run)"))
    return [p for p in found if p]


def plan(stage: Config, pipeline: PipelineConfig, output_dir=None) -> GenerationSettings:
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


def unknown_models(stage: Config, pipeline: PipelineConfig) -> list[str]:
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


def reference_of(ref: str, pipeline: PipelineConfig) -> str | None:
    """The model a `models:` entry was trained from (an earlier stage's input), which implicit_reward_accuracy
    reads it against; None for base and model directories, which name none."""
    if ref not in {s.name for s in pipeline.stages}:
        return None
    return model_path(pipeline.stage(ref).model or "base", pipeline)


def missing_references(stage: Config, pipeline: PipelineConfig) -> list[str]:
    """implicit_reward_accuracy on a model with no input model to read it against, as problem lines."""
    if metrics.IMPLICIT_REWARD_ACCURACY not in stage.metrics:
        return []
    return [f"stages.{stage.name}.models: {ref!r} was not trained from another model here, so "
            f"{metrics.IMPLICIT_REWARD_ACCURACY} has no reference to read it against; list only stages (their input "
            "model is the reference), or use preference_accuracy" for ref in stage.models
            if reference_of(ref, pipeline) is None]


def _split(path: str) -> tuple[str, str | None]:
    """(model, adapter) of a path: a LoRA stage's adapter goes on the base it names."""
    return (adapter_base(path), path) if is_adapter_dir(path) else (path, None)


def run(ctx: StageContext) -> dict:
    stage, pipeline = ctx.stage, ctx.pipeline
    problems = unknown_models(stage, pipeline) + missing_references(stage, pipeline)
    if problems:
        raise ConfigError("\n".join(problems))
    settings = plan(stage, pipeline)
    _configure_search(ctx)
    sources = resolve_sources(stage.data)
    results, table, intervals, rows = {}, {}, {}, {}
    for ref in stage.models:
        model, adapter = _split(model_path(ref, pipeline))
        reference = reference_of(ref, pipeline)
        reference, reference_adapter = _split(reference) if reference else (None, None)
        label = stage.label(ref)
        result = evaluate(model, sources, stage.metrics, ctx.stage_dir / label, adapter=adapter, limit=stage.limit,
                          settings=settings, template=stage.template or pipeline.template, dtype=pipeline.dtype,
                          trust_remote_code=pipeline.trust_remote_code,
                          attn_implementation=pipeline.attn_implementation, backend=stage.backend,
                          pass_threshold=stage.pass_threshold, reference=reference,
                          reference_adapter=reference_adapter)
        results[label] = {"ref": ref, **result.metrics}
        table[label] = figures(result.metrics["metrics"])
        intervals[label] = result.metrics.get("intervals", {})
        rows[label] = result.rows
    names = metric_names(stage.metrics)
    combined = {"metric_names": stage.metrics, "data": [str(s.path) for s in sources], "models": results,
                "figures": table, "intervals": intervals,
                "comparisons": compare_models(comparison_pairs(stage, pipeline), rows, names, settings.seed)
                if metrics.IMPLICIT_REWARD_ACCURACY not in names else []}  # each model has its own reference

    write_after_eval(ctx.stage_dir, combined)  # <stage>/report.html and the run's; a failure only warns
    return combined


def comparison_pairs(stage: Config, pipeline: PipelineConfig) -> list[tuple[str, str, str]]:
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
    stage = ctx.stage
    index = stage.search_index
    if stage.search_corpus:
        index = corpus_index(stage.search_corpus, ctx.stage_dir)
    search.configure(index=index, backend=stage.search_backend, cache=stage.search_cache)


def comparison(stage_dir: Path) -> str | None:
    """The Markdown tables of a finished eval stage, or None: the figures with their 95 % intervals (rows:
    models) and the baselines under them, then each model against its input stage and the base."""
    path = Path(stage_dir) / "metrics.json"
    if not path.exists():
        return None
    combined = json.loads(path.read_text(encoding="utf-8"))
    tables = markdown_table(combined.get("figures", {}), combined.get("intervals"),
                            stage_baselines(combined.get("models", {})))
    if combined.get("comparisons"):
        tables += "\n\n" + comparison_table(combined["comparisons"])
    return tables
