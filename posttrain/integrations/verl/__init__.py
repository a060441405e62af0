"""The VERL bridge: hand a GRPO stage to VERL (volcengine/verl) on a Ray cluster.

A posttrain GRPO stage trains on one machine with TRL. Past one machine the
same stage moves to VERL's `python3 -m verl.trainer.main_ppo`, which needs
its own parquet data, its own Hydra overrides and a reward file it can load
by path. `prepare` writes all three from the pipeline file, so the VERL run
trains the same prompts with the same rewards and, as far as VERL has
counterparts, the same settings as `posttrain run` would:

- `train/val/test.parquet` in VERL's schema (the seeds' RL data): the stage's
  rl_prompt records, split reproducibly with the pipeline's seed (the same
  partition `posttrain data split` makes), `data_source` = `{task}_{split}`,
  prompts kept as messages (VERL applies the chat template once);
- `run_verl.sh`: one Hydra override per line, mapped from the `GRPOConfig`
  that `posttrain.stages.grpo.plan` builds (so TRL's and posttrain's defaults
  carry over); extra overrides given to the script come last and win;
- the reward is posttrain's own `rewards/adapters.py:compute_score`; a stage
  with several weighted rewards lists them in each row's `extra_info`.

Override keys were checked against VERL 0.9.1 (the PyPI release, its
`verl/trainer/config/_generated_ppo_trainer.yaml`); keys newer than older
releases are written `++key=...`, which those releases accept and ignore.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

from posttrain.config import PipelineConfig, load_config
from posttrain.data.split import assignment
from posttrain.errors import ConfigError, PosttrainError, closest
from posttrain.integrations.verl.overrides import hydra_overrides
from posttrain.integrations.verl.script import OUTPUTS, SPLITS, VERL_VERSION, script, write_files  # noqa: F401
from posttrain.models.loading import load_tokenizer
from posttrain.rewards.adapters import reward_for_source
from posttrain.rewards.search.index import corpus_index
from posttrain.stages import grpo

DEFAULT_PROMPT_LENGTH = 2048  # the seed's max prompt length, when the prompts cannot be measured


# GRPOConfig fields with a VERL counterpart below, and ones that do not change what is trained
@dataclasses.dataclass
class Prepared:
    out_dir: Path
    counts: dict[str, int]
    script: Path
    overrides: list[str]
    notes: list[str]
    warnings: list[str]

    @property
    def command(self) -> str:
        return f"bash {shlex.quote(str(self.script))}"


def prepare(source, stage_name: str, out_dir, *, overrides=(), val_size: float = 0.1, test_size: float = 0.1,
            gpus: int = 1, nodes: int = 1, max_prompt_length: int | None = None, force: bool = False) -> Prepared:
    """Write OUT_DIR/{train,val,test}.parquet and OUT_DIR/run_verl.sh for a GRPO stage; see the module docstring."""
    config = source if isinstance(source, PipelineConfig) else load_config(source, overrides)
    stage = _grpo_stage(config, stage_name)
    _check_sizes(val_size, test_size, gpus, nodes, max_prompt_length)
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise PosttrainError(f"--out {out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise PosttrainError(f"--out {out_dir}: not empty; pass --force to replace its "
                             f"{', '.join(OUTPUTS)} (other files are kept)")
    notes: list[str] = []
    model_path, tokenizer_dir = _input_model(stage, config, notes)
    _template_note(stage, config, model_path, notes)
    args, _ = grpo.plan(stage, config, out_dir / "checkpoints", processes=gpus * nodes)
    records = [{"prompt": row["prompt"], "data_source": row["data_source"],
                "ground_truth": json.loads(row["ground_truth_json"]), "extra_info": json.loads(row["extra_info_json"])}
               for row in grpo.prompts(stage.data)]
    if not records:
        raise PosttrainError(f"stage {stage.name}: the training data holds no records")
    splits = _split(records, val_size, test_size, config.seed)
    rewards = _reward_list(stage, args.reward_weights, records)
    if max_prompt_length is None:
        max_prompt_length = _longest_prompt(records, tokenizer_dir, stage.template or config.template,
                                            config.trust_remote_code, notes)
    mapped, warnings = hydra_overrides(stage, config, args, out_dir, model_path, len(splits["train"]), gpus, nodes,
                                  max_prompt_length, notes)
    counts = write_files(out_dir, splits, rewards, script(stage, config, mapped, out_dir))
    if stage.search_corpus:
        notes.append(f"search index of {stage.search_corpus}: {corpus_index(stage.search_corpus, out_dir)}")
    return Prepared(out_dir, counts, out_dir / "run_verl.sh", mapped, notes, warnings)


def _grpo_stage(config: PipelineConfig, name: str):
    grpo_names = [s.name for s in config.stages if s.type == "grpo"]
    listed = f"GRPO stages: {', '.join(grpo_names)}" if grpo_names else "the pipeline has no GRPO stage"
    stage = next((s for s in config.stages if s.name == name), None)
    if stage is None:
        raise ConfigError(f"--stage: no stage named {name!r}; {listed}{closest(name, grpo_names)}")
    if stage.type != "grpo":
        raise ConfigError(f"--stage: stage {name} has type {stage.type}; VERL takes a GRPO stage ({listed})")
    return stage


def _check_sizes(val_size, test_size, gpus, nodes, max_prompt_length) -> None:
    if not 0 < val_size < 1:
        raise PosttrainError(f"--val-size: expected a fraction above 0 and below 1 (VERL needs validation prompts), "
                             f"got {val_size:g}")
    if not 0 <= test_size < 1 or val_size + test_size >= 1:
        raise PosttrainError(f"--test-size: expected a fraction from 0 that leaves training prompts beside "
                             f"--val-size {val_size:g}, got {test_size:g}")
    if gpus < 1 or nodes < 1:
        raise PosttrainError(f"--gpus and --nodes: expected at least 1, got {gpus} and {nodes}")
    if max_prompt_length is not None and max_prompt_length < 1:
        raise PosttrainError(f"--max-prompt-length: expected a positive number of tokens, got {max_prompt_length}")


def _input_model(stage, config: PipelineConfig, notes: list[str]) -> tuple[str, Path | None]:
    """The stage's input model as the pipeline resolves it (absolute when local), and a local dir with its tokenizer."""
    names = [s.name for s in config.stages]
    ref = stage.model or "base"
    if ref not in names:
        return _local(config.model if ref == "base" else ref, notes)
    if names.index(ref) >= names.index(stage.name):
        raise ConfigError(f"stages.{stage.name}.model: {ref!r} is a later stage; a stage can start from an earlier one")
    path = (Path(config.output_dir) / ref / "model").resolve()
    if not path.is_dir():
        notes.append(f"the input model is stage {ref}'s output {path}, which does not exist yet: "
                     f"train it first (posttrain run FILE --only {ref}), then run the script")
    if (path / "adapter_config.json").exists() or getattr(config.stage(ref), "finetuning", "full") != "full":
        notes.append(f"stage {ref} trains a LoRA adapter, and VERL loads actor_rollout_ref.model.path as a full "
                     f"model: merge the adapter into its base and pass actor_rollout_ref.model.path=MERGED_DIR")
    return str(path), path if path.is_dir() else _upstream_tokenizer(config, config.stage(ref))


def _template_note(stage, config: PipelineConfig, model_path: str, notes: list[str]) -> None:
    """posttrain applies a named `template:`; VERL applies the chat template saved with the model."""
    template = stage.template or config.template
    earlier = next((s for s in config.stages if s.name == stage.model), None)
    saved = (getattr(earlier, "template", None) or config.template) if earlier is not None else None  # saved with it
    if template and template != saved:
        notes.append(f"the stage applies chat template {template!r}, VERL the one saved with {model_path}: save the "
                     f"tokenizer with that template there, or set actor_rollout_ref.model.custom_chat_template")


def _upstream_tokenizer(config: PipelineConfig, stage) -> Path | None:
    """For an untrained stage: the nearest local model upstream, whose tokenizer that stage will save."""
    names, seen = [s.name for s in config.stages], set()
    while True:
        ref = stage.model or "base"
        if ref not in names:
            return _local(config.model if ref == "base" else ref, [])[1]
        if (Path(config.output_dir) / ref / "model").is_dir():
            return (Path(config.output_dir) / ref / "model").resolve()
        if ref in seen:
            return None
        seen.add(ref)
        stage = config.stage(ref)


def _local(path: str, notes: list[str]) -> tuple[str, Path | None]:
    """A local model dir made absolute (VERL's workers start elsewhere); a hub id stays as is."""
    p = Path(path).expanduser()
    if not p.exists() and not path.startswith((".", "/", "~")):
        notes.append(f"the input model {path!r} is not a local directory: VERL takes it as a hub id and downloads it")
        return path, None
    p = p.resolve()
    if not p.is_dir():
        notes.append(f"the input model {p} does not exist here; VERL's nodes must have it at that path")
    return str(p), p if p.is_dir() else None


def _split(records: list[dict], val_size: float, test_size: float, seed: int) -> dict[str, list[dict]]:
    split_of = assignment(len(records), (1 - val_size - test_size, val_size, test_size), seed)
    splits = {name: [r for r, k in zip(records, split_of) if k == i] for i, name in enumerate(SPLITS)}
    for name, size in (("train", 1 - val_size - test_size), ("val", val_size)):
        if not splits[name]:
            raise PosttrainError(f"the {name} split is empty ({len(records)} prompts × {size:g} rounds to 0); "
                                 f"VERL needs {name} prompts: change --val-size/--test-size or add data")
    return splits


def _reward_list(stage, weights, records: list[dict]) -> list[dict] | None:
    """The stage's rewards with the weights TRL uses, for extra_info; None when data_source names the same reward."""
    weights = weights or [r.weight for r in stage.rewards]
    if len(weights) != len(stage.rewards):
        raise ConfigError(f"stages.{stage.name}.trainer.reward_weights: {len(weights)} weights for "
                          f"{len(stage.rewards)} rewards")
    if any(r.model for r in stage.rewards):
        raise ConfigError(f"stages.{stage.name}.rewards: a reward model is scored in posttrain's GRPO stage; "
                          "VERL's compute_score takes reward functions only")
    rewards = [{"name": _absolute_reward(r.name), "weight": float(w)} for r, w in zip(stage.rewards, weights)]
    if len(rewards) == 1 and rewards[0]["weight"] == 1.0:
        try:
            if all(reward_for_source(r["data_source"]) == rewards[0]["name"] for r in records):
                return None
        except ValueError:
            pass
    return rewards


def _absolute_reward(name: str) -> str:
    """A reward in a .py file, by absolute path: VERL's reward workers do not start in this directory."""
    where, sep, function = name.rpartition(":")
    return f"{Path(where).resolve()}{sep}{function}" if where.endswith(".py") else name


def _longest_prompt(records, tokenizer_dir, template, trust_remote_code, notes) -> int:
    """The longest prompt in tokens, chat template applied as VERL applies it (TRL never cuts a prompt)."""
    if tokenizer_dir is None:
        notes.append(f"no local tokenizer to measure the prompts with: data.max_prompt_length={DEFAULT_PROMPT_LENGTH} "
                     f"(pass --max-prompt-length, or override data.max_prompt_length)")
        return DEFAULT_PROMPT_LENGTH

    tokenizer = load_tokenizer(str(tokenizer_dir), template=template, trust_remote_code=trust_remote_code)
    texts = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in records]
    longest = max(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    notes.append(f"data.max_prompt_length={longest}: the longest prompt, measured with the tokenizer in "
                 f"{tokenizer_dir}")
    return longest


