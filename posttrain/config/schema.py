"""The YAML language's types: what a pipeline file and each stage's common fields may say.

posttrain declares only its own fields; a stage's `trainer:` block is handed to the matching TRL config class as
is and checked against that class's real fields. Each stage type's own fields are its module's `Config`
(posttrain/stages/), a subclass of StageConfig or TrainingStage here; posttrain/config/load.py reads a file and
types each stage through the stage table.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from posttrain import rewards
from posttrain.errors import ConfigError, closest

ZERO_STAGES = ("zero2", "zero3")  # the DeepSpeed configs posttrain ships (posttrain/training/engines.py)
ENGINE_KEYS = {"deepspeed": ("deepspeed",), "fsdp": ("fsdp", "fsdp_config")}  # stage field -> trainer keys

_STAGE_NAME = re.compile(r"[A-Za-z0-9_-]+")


class Strict(BaseModel):
    """Rejects unknown keys (`error_lines` names the closest valid one), and NaN or infinite numbers."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def as_list(value):
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
    modules_to_save: list[str] | None = None  # trained whole beside the adapters (LLaMA-Factory's additional_target)
    adapter: str | None = None  # a peft LoRA adapter directory to go on training (its rank, targets), not a fresh one
    rslora: bool = False  # rank-stabilised scaling, alpha / sqrt(r) (peft's use_rslora)
    dora: bool = False  # weight-decomposed LoRA (peft's use_dora)
    init: bool | str = True  # peft's init_lora_weights: true, gaussian, pissa, pissa_niter_16, olora, ...
    # LoRA+: the B matrices learn plus_lr_ratio times faster than A (peft's create_loraplus_optimizer)
    plus_lr_ratio: float | None = Field(default=None, ge=1)
    plus_lr_embedding: float | None = Field(default=None, gt=0)  # LoRA+'s rate for adapters on embeddings


class FreezeSpec(Strict):
    """`finetuning: freeze`: train some decoder layers whole and freeze the rest (LLaMA-Factory's freeze tuning)."""

    trainable_layers: int = 2  # the last n layers; a negative n, the first |n|
    trainable_modules: str | list[str] = "all"  # within those layers: all, or names such as mlp, self_attn
    extra_modules: list[str] = Field(default_factory=list)  # outside the layers: embed_tokens, norm, lm_head


class OftSpec(Strict):
    """`finetuning: oft`: orthogonal fine-tuning adapters (peft's OFT)."""

    r: int = Field(default=0, ge=0)  # the number of blocks; 0: derived from block_size
    block_size: int = Field(default=32, ge=0)
    target_modules: str | list[str] = "all-linear"
    module_dropout: float = Field(default=0.0, ge=0, lt=1)


class StageConfig(Strict):
    """Fields every stage has; each stage type's module subclasses it as its `Config` (posttrain/stages/)."""

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
        trainer = {**trainer, "fsdp": _fsdp_options(trainer["fsdp"])} if "fsdp" in trainer else trainer
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
        if not isinstance(value, list) and _fits(adapter, [value]):
            return None  # one value for a list field (loss_type: ipo): TRL's configs take it, as HfArgumentParser does
        if isinstance(hint, type):
            return hint.__name__
        return re.sub(r"\b(typing|builtins|transformers\.[\w.]+)\.", "", str(hint).replace("NoneType", "None"))
    return None


def _fits(adapter, value) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


OWN_TRAINER_KEYS = {"output_dir": "each stage writes to <output_dir>/<stage>/"}


def trainer_config_class(spec: str | None):
    if spec is None:
        return None
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _fsdp_options(fsdp):
    """FSDP's option list ([full_shard, auto_wrap]) as the one string TrainingArguments types it; both split alike."""
    return " ".join(fsdp) if isinstance(fsdp, list) and fsdp and all(isinstance(o, str) for o in fsdp) else fsdp


class TrainingStage(StageConfig):
    """A stage that trains: it may name the engine its processes shard with (posttrain/training/engines.py)."""

    deepspeed: str | None = None  # zero2, zero3 or a DeepSpeed JSON file
    fsdp: bool | str | dict[str, Any] | None = None  # true, an fsdp_config mapping or JSON file, or legacy options
    # an optimizer transformers' `optim` cannot name (training/optimizers.py); the others go in trainer.optim
    optimizer: Literal["default", "muon"] = "default"
    _fsdp_list = field_validator("fsdp", mode="before")(lambda cls, fsdp: _fsdp_options(fsdp))

    @model_validator(mode="after")
    def _one_engine(self):
        """The fields' shape, when the config loads (what the machine lacks is posttrain/training/engines.py's,
        at run time)."""
        if self.deepspeed and self.fsdp:
            raise ValueError("give deepspeed or fsdp, not both: each shards the model its own way")
        for field, keys in ENGINE_KEYS.items():
            twice = [key for key in keys if getattr(self, field) and key in self.trainer]
            if twice:
                raise ValueError(f"{field} is given as the stage's `{field}:` and as trainer.{twice[0]}; give it once")
        lora = getattr(self, "lora", None)
        custom = [name for name, given in (("optimizer: muon", self.optimizer == "muon"),
                                           ("lora.plus_lr_ratio", lora is not None and lora.plus_lr_ratio is not None))
                  if given]
        if len(custom) > 1:
            raise ValueError(f"{' and '.join(custom)} each build the optimizer; give one")
        if custom and "optim" in self.trainer:
            raise ValueError(f"{custom[0]} builds the optimizer, and trainer.optim names another; give one")
        if self.optimizer == "muon" and (self.deepspeed or self.fsdp):
            raise ValueError("optimizer: muon is built by posttrain, which DeepSpeed and FSDP stages do not take")
        if lora is not None and lora.plus_lr_ratio is not None:
            if getattr(self, "finetuning", "full") not in ("lora", "qlora"):
                raise ValueError(f"lora.plus_lr_ratio: LoRA+ sets the learning rate of LoRA adapters, and the stage's "
                                 f"finetuning is {getattr(self, 'finetuning', 'full')}; use finetuning: lora")
            if self.deepspeed or self.fsdp:
                raise ValueError("lora.plus_lr_ratio: LoRA+ builds its own optimizer, which DeepSpeed and FSDP "
                                 "stages do not take; drop one of them")
        if self.deepspeed is not None and self.deepspeed not in ZERO_STAGES and not self.deepspeed.endswith(".json"):
            raise ValueError(f"deepspeed: expected zero2, zero3 or a DeepSpeed .json file, got {self.deepspeed!r}")
        if self.fsdp is False or self.fsdp == "" or self.fsdp == {}:
            raise ValueError("fsdp: leave it out to train without FSDP (true, a mapping of fsdp_config or a .json "
                             "file turn it on)")
        return self


class HeldOutDataStage(TrainingStage):
    """A training stage on records with a held-out share: `eval_data`, else `val_size` of `data`
    (training/inputs.py); the settings of `finetuning: lora`, `freeze` and `oft`; the loss plot."""

    data: list[DataSpec] = Field(min_length=1)
    eval_data: list[DataSpec] | None = None
    val_size: float = Field(default=0.0, ge=0, lt=1)
    lora: LoraSpec = Field(default_factory=LoraSpec)
    freeze: FreezeSpec = Field(default_factory=FreezeSpec)
    oft: OftSpec = Field(default_factory=OftSpec)
    plot_loss: bool = False

    _data_lists = field_validator("data", "eval_data", mode="before")(as_list)


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


def one_search_source(stage):
    """Study-search queries go to one place: a built index, a corpus the stage indexes, or live PubMed."""
    if stage.search_index and stage.search_corpus:
        raise ValueError("give search_index (a built index) or search_corpus (indexed by the stage), not both")
    if stage.search_backend == "ncbi" and (stage.search_index or stage.search_corpus):
        raise ValueError("search_backend ncbi searches live PubMed; drop search_index/search_corpus")
    return stage


def reward_names(stage: StageConfig) -> list[str]:
    """The library rewards a stage calls: a GRPO stage's `rewards:`, an eval stage's reward:NAME metrics."""
    if stage.type == "eval":  # duck-typed: the eval stage's Config lives above this module
        return [m.removeprefix("reward:") for m in stage.metrics if m.startswith("reward:")]
    return [reward.name for reward in getattr(stage, "rewards", None) or [] if reward.name]


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
            # a stage's fields are its type's (posttrain/stages/); config.load.load_config and from_dict type them
            raise ValueError(f"stage {stage.get('name', i)}: expected a typed stage; read the config with "
                             "posttrain.load_config")
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
