"""YAML files plus dotted overrides, validated into typed configs.

posttrain declares only its own fields; a stage's `trainer:` block is handed
to the matching TRL config class as is and checked against that class's real
fields. Every unknown key, at any depth, is an error naming the closest valid
key. A LLaMA-Factory recipe is recognised and translated before validation.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from posttrain.errors import ConfigError


# PyYAML reads `1e-5` as a string (YAML 1.1 wants a dot); users mean a float.
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)$|^[-+]?(?:\d[\d_]*)?\.\d+$|^[-+]?\d[\d_]*\.$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


_STAGE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def closest(key: str, known) -> str:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


class Strict(BaseModel):
    """Rejects unknown keys; `error_lines` names the closest valid one."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _as_list(value):
    """`data:` may be one spec or a list of them; one shape keeps errors to one line each."""
    return value if value is None or isinstance(value, list) else [value]


class DataSpec(Strict):
    """One data source: a file/dir/hub id, or names in a LLaMA-Factory dataset_info.json."""

    path: str | None = None
    format: str | None = None
    dataset: str | None = None
    dataset_dir: str = "data"
    columns: dict[str, str] | None = None
    tags: dict[str, str] | None = None
    split: str = "train"
    max_samples: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data):
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of `path` (a file, directory or hub id) or `dataset` (names in dataset_info.json)")
        return self


class LoraSpec(Strict):
    r: int = Field(default=8, ge=1)
    alpha: int | None = None  # default 2 * r
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    # modules trained whole beside the adapters (peft's modules_to_save, LLaMA-Factory's additional_target),
    # e.g. embed_tokens when the embeddings are new: a tied lm_head stays tied to them
    modules_to_save: list[str] | None = None


class StageConfig(Strict):
    """Fields every stage has; each stage type subclasses it and registers in STAGE_CONFIGS."""

    trainer_class: ClassVar[str | None] = None  # "module:Class" of the TRL config the trainer block feeds

    name: str
    type: str
    model: str | None = None  # an earlier stage's name, `base`, or a model path; default: the pipeline's model
    trainer: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _identifier(cls, name):
        # the name is a directory of the run (and a key of dotted overrides): `..` would write, and --force
        # delete, beside the run directory
        if not _STAGE_NAME.fullmatch(name):
            raise ValueError(f"expected an identifier: letters, digits, _ and - (no dots, slashes or spaces), "
                             f"got {name!r}")
        return name

    @field_validator("trainer")
    @classmethod
    def _trainer_keys(cls, trainer):
        config_class = trainer_config_class(cls.trainer_class)
        if config_class is None:
            return trainer
        known = {f.name for f in dataclasses.fields(config_class) if f.init}
        problems = [f"{key!r} is set by posttrain ({OWN_TRAINER_KEYS[key]})" for key in trainer if key in OWN_TRAINER_KEYS]
        problems += [f"unknown key {key!r} for {config_class.__name__}{closest(key, known)}"
                     for key in trainer if key not in known and key not in OWN_TRAINER_KEYS]
        for key, value in trainer.items():
            if key not in known or value is None:  # unknown keys are reported above; None leaves a default
                continue
            expected = _trainer_type_error(config_class, key, value)
            if expected:
                problems.append(f"{key}: expected {expected}, got {value!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return trainer


@functools.lru_cache(maxsize=None)
def _trainer_adapter(config_class, key: str):
    hint = typing.get_type_hints(config_class).get(key)
    try:
        return TypeAdapter(hint), hint
    except Exception:  # a type pydantic cannot check: leave it to the TRL config class
        return None, hint


def _trainer_type_error(config_class, key: str, value) -> str | None:
    """What a trainer value should have been, when it does not fit its field's type."""
    adapter, hint = _trainer_adapter(config_class, key)
    if adapter is None:
        return None
    try:
        adapter.validate_python(value)
    except ValidationError:
        if isinstance(hint, type):
            return hint.__name__
        return re.sub(r"\b(typing|builtins|transformers\.[\w.]+)\.", "", str(hint).replace("NoneType", "None"))
    return None


OWN_TRAINER_KEYS = {"output_dir": "each stage writes to <output_dir>/<stage>/"}


def trainer_config_class(spec: str | None):
    if spec is None:
        return None
    import importlib

    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


class TrainingStage(StageConfig):
    """A stage that trains: it may name the engine its processes shard with (posttrain/launch/engines.py)."""

    deepspeed: str | None = None  # zero2, zero3 or a DeepSpeed JSON file
    fsdp: bool | str | dict[str, Any] | None = None  # true, an fsdp_config mapping or JSON file, or legacy options

    @model_validator(mode="after")
    def _one_engine(self):
        from posttrain.launch.engines import check_fields

        check_fields(self)
        return self


class SFTStage(TrainingStage):
    """Supervised fine-tuning on conversations; `trainer:` feeds trl.SFTConfig.

    SFTConfig's own `max_length`, `packing` and `assistant_only_loss` keep their
    names in `trainer:`; posttrain's defaults are 1024, true and true, and its
    packing is exact (attention never crosses examples).
    """

    trainer_class: ClassVar[str] = "trl:SFTConfig"

    type: Literal["sft"]
    data: list[DataSpec] = Field(min_length=1)
    eval_data: list[DataSpec] | None = None
    val_size: float = Field(default=0.0, ge=0, lt=1)
    finetuning: Literal["full", "lora", "qlora"] = "full"
    lora: LoraSpec = Field(default_factory=LoraSpec)
    template: str | None = None
    plot_loss: bool = False

    _data_lists = field_validator("data", "eval_data", mode="before")(_as_list)


class RewardSpec(Strict):
    name: str | None = None  # a built-in reward, module:function or path/to/file.py:function
    weight: float = 1.0
    # or a trained reward model: an earlier reward_model/process_reward stage's name, or a model directory
    model: str | None = None
    aggregate: Literal["min", "mean", "product"] = "min"  # a process reward model's step scores -> one reward
    step_separator: str = "\n"  # how a completion is cut into steps for a process reward model

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data):
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _known(cls, name):
        from posttrain import rewards

        if name is None:
            return name
        try:
            rewards.get(name)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return name

    @model_validator(mode="after")
    def _name_or_model(self):
        if (self.name is None) == (self.model is None):
            raise ValueError("give exactly one of `name` (a reward function) or `model` (a reward model: "
                             "an earlier stage's name or a model directory)")
        return self

    @property
    def label(self) -> str:
        """How the reward is logged: its name, or rm_<stage or directory name> for a reward model."""
        if self.name:
            return self.name
        path = Path(self.model.rstrip("/"))
        base = path.parent.name if path.name == "model" and path.parent.name else path.name  # <stage>/model
        return "rm_" + re.sub(r"[^A-Za-z0-9_.-]", "_", base)


class GRPOStage(TrainingStage):
    """Reinforcement with verifiable rewards on rl_prompt records; `trainer:` feeds trl.GRPOConfig."""

    trainer_class: ClassVar[str] = "trl:GRPOConfig"

    type: Literal["grpo"]
    data: list[DataSpec] = Field(min_length=1)
    rewards: list[RewardSpec] = Field(min_length=1)
    finetuning: Literal["full", "lora", "qlora"] = "full"
    lora: LoraSpec = Field(default_factory=LoraSpec)
    template: str | None = None
    search_index: str | None = None  # the FTS5 study-search index the rewards query
    search_corpus: str | None = None  # or a PubMed-style corpus the stage indexes itself (once per content)
    search_backend: Literal["index", "ncbi"] | None = None  # ncbi: live PubMed (NCBI_API_KEY from the environment)
    search_cache: str | None = None  # where live PubMed answers are kept between rollouts and runs
    plot_loss: bool = False

    _data_lists = field_validator("data", mode="before")(_as_list)

    @model_validator(mode="after")
    def _one_search_source(self):
        return _one_search_source(self)


def _one_search_source(stage):
    """Study-search queries go to one place: a built index, a corpus the stage indexes, or live PubMed."""
    if stage.search_index and stage.search_corpus:
        raise ValueError("give search_index (a built index) or search_corpus (indexed by the stage), not both")
    if stage.search_backend == "ncbi" and (stage.search_index or stage.search_corpus):
        raise ValueError("search_backend ncbi searches live PubMed; drop search_index/search_corpus")
    return stage


class ProcessRewardStage(TrainingStage):
    """A step-level process reward model on `steps` records; `trainer:` feeds transformers.TrainingArguments.

    Each step is followed by `step_separator` and its label is predicted at that separator's token.
    """

    trainer_class: ClassVar[str] = "transformers:TrainingArguments"

    type: Literal["process_reward"]
    data: list[DataSpec] = Field(min_length=1)
    eval_data: list[DataSpec] | None = None
    val_size: float = Field(default=0.0, ge=0, lt=1)
    step_separator: str = Field(default="\n", min_length=1)
    max_length: int = Field(default=1024, ge=8)
    finetuning: Literal["full", "lora"] = "full"
    lora: LoraSpec = Field(default_factory=LoraSpec)
    template: str | None = None
    plot_loss: bool = False

    _data_lists = field_validator("data", "eval_data", mode="before")(_as_list)


class RewardModelStage(TrainingStage):
    """A Bradley-Terry reward model on preference pairs; `trainer:` feeds trl.RewardConfig.

    The model becomes a sequence classifier with one output, trained so the chosen response scores above the
    rejected one; ties are dropped (and counted).
    """

    trainer_class: ClassVar[str] = "trl:RewardConfig"

    type: Literal["reward_model"]
    data: list[DataSpec] = Field(min_length=1)
    eval_data: list[DataSpec] | None = None
    val_size: float = Field(default=0.0, ge=0, lt=1)
    finetuning: Literal["full", "lora"] = "full"
    lora: LoraSpec = Field(default_factory=LoraSpec)
    template: str | None = None
    plot_loss: bool = False

    _data_lists = field_validator("data", "eval_data", mode="before")(_as_list)


class EvalStage(StageConfig):
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

    _data_lists = field_validator("data", mode="before")(_as_list)

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_list(cls, value):
        return [v.strip() for v in value.split(",")] if isinstance(value, str) else value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names):
        from posttrain.evaluation import metrics

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
            from posttrain.evaluation.generation import GenerationSettings

            try:  # the generation settings' own rule: k samples of greedy decoding are one answer k times
                GenerationSettings(temperature=self.temperature, top_p=self.top_p, do_sample=self.do_sample,
                                   num_samples=self.num_samples)
            except ConfigError as e:
                raise ValueError(str(e)) from None
            corpus = [name for name in self.metrics if name in ("bleu", "judge", "rm_accuracy")]
            if corpus:
                raise ValueError(f"num_samples {self.num_samples}: {', '.join(corpus)} is a figure over the whole "
                                 "file, not a score per answer; evaluate it in an eval stage with one sample")
        labels = [self.label(ref) for ref in self.models]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"models: {', '.join(twice)} named twice (each model's results go to "
                             "<stage>/<name>/)")
        return _one_search_source(self)

    @staticmethod
    def label(ref: str) -> str:
        """The folder a model's results go to: its name, or a model directory's own name."""
        path = Path(ref.rstrip("/"))
        if path.name in ("", ".", ".."):  # `.`, `../..`: the directory's own name, never a way up from <stage>/
            path = Path(ref).resolve()
        if len(path.parts) <= 1:
            return re.sub(r"[^A-Za-z0-9_.-]", "_", ref)
        base = path.parent.name if path.name == "model" and path.parent.name else path.name  # <stage>/model
        return re.sub(r"[^A-Za-z0-9_.-]", "_", base).strip(".") or "model"


class ExportStage(StageConfig):
    """A standalone model from `model:` (an earlier stage or a directory): LoRA adapters merged, cast to `dtype`
    (default: the model's own), saved with tokenizer and model card to <stage>/model, verified against the
    unmerged model unless `verify: false`. It trains nothing and has no `trainer:`."""

    type: Literal["export"]
    dtype: Literal["bf16", "fp16", "fp32"] | None = None
    verify: bool = True
    prompts: str | None = None  # verification prompts: a .txt (one a line) or a prompt data file; default built in
    template: str | None = None  # a chat template for a tokenizer without one

    @model_validator(mode="after")
    def _no_trainer(self):
        if self.trainer:
            raise ValueError("an export stage trains nothing and has no `trainer:`; its settings are dtype, verify, "
                             "prompts and template")
        return self


def reward_names(stage: StageConfig) -> list[str]:
    """The library rewards a stage calls: a GRPO stage's `rewards:`, an eval stage's reward:NAME metrics."""
    if stage.type == "eval":
        return [m.removeprefix("reward:") for m in stage.metrics if m.startswith("reward:")]
    return [reward.name for reward in getattr(stage, "rewards", None) or [] if reward.name]


STAGE_CONFIGS: dict[str, type[StageConfig]] = {"sft": SFTStage, "grpo": GRPOStage}
STAGE_CONFIGS["process_reward"] = ProcessRewardStage
STAGE_CONFIGS["reward_model"] = RewardModelStage
STAGE_CONFIGS["eval"] = EvalStage
STAGE_CONFIGS["export"] = ExportStage


class LaunchSpec(Strict):
    """How training stages run: processes per node, nodes, this node's rank and where rank 0 listens.

    How a stage ran, not what it is: no stage's fingerprint covers it (posttrain/launch/).
    """

    nproc: int = Field(default=1, ge=1)
    nnodes: int = Field(default=1, ge=1)
    node_rank: int = Field(default=0, ge=0)
    master_addr: str = Field(default="127.0.0.1", min_length=1)
    master_port: int | None = Field(default=None, ge=1, le=65535)  # default: a free port; 29500 across nodes

    @model_validator(mode="after")
    def _rank_in_range(self):
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} is not below nnodes {self.nnodes} (ranks count from 0)")
        if self.nnodes > 1 and "master_addr" not in self.model_fields_set:
            # the default, 127.0.0.1, would have each node wait for the others on its own loopback
            raise ValueError(f"nnodes {self.nnodes} needs master_addr: the address of node 0, which every node "
                             "reaches (127.0.0.1 only when all the nodes are on one machine)")
        return self

    @property
    def processes(self) -> int:
        return self.nproc * self.nnodes


class PipelineConfig(Strict):
    name: str
    model: str
    output_dir: str | None = None  # default runs/<name>
    seed: int = 42
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    trust_remote_code: bool = False
    template: str | None = None
    attn_implementation: str | None = None
    launch: LaunchSpec = Field(default_factory=LaunchSpec)
    stages: list[StageConfig]

    @field_validator("name")
    @classmethod
    def _a_folder_name(cls, name):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not name.strip("."):  # runs/<name>: `..` is not one
            raise ValueError(f"expected letters, digits, _, - and . (not only dots), got {name!r}")
        return name

    @field_validator("stages", mode="before")
    @classmethod
    def _typed_stages(cls, stages):
        if not isinstance(stages, list) or not stages:
            raise ValueError("expected a non-empty list of stages")
        typed = []
        for i, stage in enumerate(stages):
            if isinstance(stage, StageConfig):  # already validated by load_config
                typed.append(stage)
                continue
            if not isinstance(stage, dict):
                raise ValueError(f"stage {i}: expected a mapping with name and type")
            kind = stage.get("type")
            if kind not in STAGE_CONFIGS:
                raise ValueError(f"stage {stage.get('name', i)}: unknown type {kind!r}; known: "
                                 f"{', '.join(STAGE_CONFIGS)}{closest(str(kind), STAGE_CONFIGS)}")
            typed.append(STAGE_CONFIGS[kind].model_validate(stage))
        return typed

    @model_validator(mode="after")
    def _wiring(self):
        seen: set[str] = set()
        for stage in self.stages:
            if stage.name in seen or stage.name == "base":
                raise ValueError(f"stage name {stage.name!r} is used twice or is reserved")
            seen.add(stage.name)
        _eval_wiring(self.stages)
        if self.output_dir is None:
            self.output_dir = str(Path("runs") / self.name)
        return self

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ConfigError(f"no stage named {name!r}; stages: {', '.join(s.name for s in self.stages)}"
                          f"{closest(name, [s.name for s in self.stages])}")


def _eval_wiring(stages: list[StageConfig]) -> None:
    """An eval stage compares models that exist before it, and writes no model a later stage could start from."""
    names = [stage.name for stage in stages]
    evals = {stage.name for stage in stages if stage.type == "eval"}
    for i, stage in enumerate(stages):
        refs = [getattr(stage, "model", None)] + [r.model for r in getattr(stage, "rewards", None) or []]
        refs += getattr(stage, "models", None) or [] if stage.type == "eval" else []
        for ref in refs:
            if ref in evals:
                raise ValueError(f"stages.{stage.name}: {ref!r} is an eval stage; it writes no model to start "
                                 "from, score with or evaluate")
            if stage.type == "eval" and ref in names[i:]:
                raise ValueError(f"stages.{stage.name}.models: {ref!r} is not an earlier stage; an eval stage "
                                 "compares base and the stages before it")


def apply_override(raw: dict, override: str) -> None:
    """Apply `a.b.c=value` to the raw config; list items are addressed by `name` or index."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key.path=value")
    path, text = override.split("=", 1)
    value = parse_yaml(text) if text.strip() else ""
    keys = path.strip().split(".")
    node: Any = raw
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            index = next((i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == key), None)
            if index is None and key.isdigit() and int(key) < len(node):
                index = int(key)
            if index is None:
                names = [item.get("name") for item in node if isinstance(item, dict)]
                raise ConfigError(f"override {path}: no item named {key!r}{closest(key, [n for n in names if n])}")
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            raise ConfigError(f"override {path}: {'.'.join(keys[:depth])} is not a mapping")


def load_raw(source: str | Path | dict) -> tuple[dict, Path | None]:
    if isinstance(source, dict):
        import copy

        return copy.deepcopy(source), None
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw, path


def load_config(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read a pipeline file (or a LLaMA-Factory recipe), apply overrides, validate."""
    raw, path = load_raw(source)
    from posttrain.compat import llamafactory

    if llamafactory.is_recipe(raw) or ("stages" not in raw and "type" in raw):
        # overrides may use the file's own keys (max_steps=2, trainer.max_steps=2) or the pipeline's
        own = [o for o in overrides
               if not o.startswith("stages.") and o.split("=", 1)[0].split(".")[0] not in _PIPELINE_KEYS]
        for override in own:
            apply_override(raw, override)
        overrides = [o for o in overrides if o not in own]
        raw = llamafactory.to_pipeline(raw, path) if llamafactory.is_recipe(raw) else _single_stage(raw)
    for override in overrides:
        apply_override(raw, override)
    # Stages are validated one by one first so each error can name its stage.
    lines: list[str] = []
    typed: list[StageConfig] = []
    stages = raw.get("stages")
    for i, stage in enumerate(stages if isinstance(stages, list) else []):
        name = stage.get("name", i) if isinstance(stage, dict) else i
        if not isinstance(name, str) or not _STAGE_NAME.fullmatch(name):
            name = i  # a name that is no identifier would make the location itself unreadable
        kind = stage.get("type") if isinstance(stage, dict) else None
        if not isinstance(stage, dict):
            lines.append(f"stages.{i}: expected a mapping with name and type")
            continue
        if kind not in STAGE_CONFIGS:
            lines.append(f"stages.{name}.type: unknown stage type {kind!r}; known: {', '.join(STAGE_CONFIGS)}"
                         f"{closest(str(kind), STAGE_CONFIGS)}")
            continue
        try:
            typed.append(STAGE_CONFIGS[kind].model_validate(stage))
        except ValidationError as e:
            lines += error_lines(e, f"stages.{name}", STAGE_CONFIGS[kind], stage)
    if not lines and typed:
        raw = {**raw, "stages": typed}
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        # each stage's own errors were listed above
        stage_errors = bool(lines)
        lines += [line for line in error_lines(e, model=PipelineConfig, raw=raw)
                  if not (stage_errors and line.startswith("stages"))]
    if lines:
        head = f"{path}: invalid config" if path else "invalid config"
        raise ConfigError(head + "\n" + "\n".join(f"  {line}" for line in dict.fromkeys(lines)))
    return config


_PIPELINE_KEYS = {"name", "model", "output_dir", "seed", "dtype", "trust_remote_code", "template", "attn_implementation",
                  "launch"}


def _single_stage(raw: dict) -> dict:
    """A file with no `stages:` is a pipeline of one stage."""
    top = {k: v for k, v in raw.items() if k in _PIPELINE_KEYS}
    stage = {k: v for k, v in raw.items() if k not in _PIPELINE_KEYS}
    stage.setdefault("name", stage["type"])
    top.setdefault("name", stage["name"])
    return {**top, "stages": [stage]}


def error_lines(error: ValidationError, prefix: str = "", model: type[BaseModel] | None = None,
                raw=None) -> list[str]:
    lines = []
    for item in error.errors():
        loc = _as_written(item["loc"], raw)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "missing (required)"
        elif item["type"] == "extra_forbidden":
            key = loc.pop()
            message = f"unknown key {key!r}{closest(key, _fields_at(model, loc))}"
        where = ".".join([prefix] * bool(prefix) + loc)
        if not where and message.startswith("stages."):  # a check across stages says which stage itself
            lines.append(message)
            continue
        lines.append(f"{where or '(top level)'}: {message}")
    return lines


def _as_written(loc, raw) -> list[str]:
    """The location as the user wrote it: `data.0` is `data` when `data:` was a single spec."""
    out, node = [], raw
    for part in loc:
        if isinstance(part, int) and not isinstance(node, list):
            continue
        out.append(str(part))
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
    return out


def _has(node, part) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and part < len(node)


def _fields_at(model, loc: list[str]) -> list[str]:
    """The valid keys of the config model at `loc`, for the did-you-mean hint."""
    import typing

    current = model
    for part in loc:
        if current is None or part.isdigit():
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = None
        pending = [field.annotation]
        while pending:
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                current = annotation
                break
            pending.extend(typing.get_args(annotation))
    return list(current.model_fields) if current is not None else []
