"""The files a VERL run starts from: run_verl.sh (the overrides, the reward file, the search backend's
environment) and the parquet splits."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path

from posttrain.config import PipelineConfig
from posttrain.data.formats import get_format, writer
from posttrain.data.io import write_records
from posttrain.errors import PosttrainError
from posttrain.integrations.verl.overrides import hydra_value, module_pattern
from posttrain.rewards import adapters
from posttrain.rewards.adapters import _SPLIT_SUFFIX, REWARDS_KEY
from posttrain.rewards.search.index import corpus_index

_NEW_REWARD_LAYOUT = ('import importlib.util, os, sys; s = importlib.util.find_spec("verl"); '
                      'sys.exit(0 if s and os.path.isfile(os.path.join(os.path.dirname(s.origin), "trainer", '
                      '"config", "reward", "reward.yaml")) else 1)')


# exit 0 where VERL types model.target_modules as one string (releases before 0.9)
_STRING_TARGETS = ('import dataclasses, sys; from verl.workers.config.model import HFModelConfig as c; '
                   't = {f.name: str(f.type) for f in dataclasses.fields(c)}.get("target_modules", ""); '
                   'sys.exit(0 if t.replace("typing.", "") in ("Optional[str]", "str", "str | None") else 1)')
TARGETS_KEY = "actor_rollout_ref.model.target_modules"
VERL_VERSION = "0.9.1"
SPLITS = ("train", "val", "test")
OUTPUTS = tuple(f"{split}.parquet" for split in SPLITS) + ("run_verl.sh",)


def script(stage, config: PipelineConfig, overrides: list[str], out_dir: Path) -> str:
    reward_file = Path(adapters.__file__).resolve()
    lines = [
        "#!/usr/bin/env bash",
        f"# GRPO stage {stage.name} of pipeline {config.name}, prepared by `posttrain verl prepare` for VERL.",
        "# Run it where `ray status` shows the cluster (or on one machine): bash run_verl.sh [Hydra overrides];",
        "# overrides given to the script come last and win over the ones below.",
        f"# Override keys checked against VERL {VERL_VERSION} (verl/trainer/config/_generated_ppo_trainer.yaml);",
        "# `++key=value` keys are newer than some older releases, which accept and ignore them.",
        "# Batch sizes: TRL counts completions (per_device_train_batch_size x gradient_accumulation_steps x GPUs",
        "# per optimizer step), VERL counts prompts, each sampled rollout.n times: data.train_batch_size and",
        "# actor.ppo_mini_batch_size are those completions divided by num_generations; step counts (save, test,",
        "# max steps) are in VERL training steps, one generation round each.",
        "# The reward is posttrain's compute_score, loaded by path: every Ray node needs posttrain installed",
        "# and this file at the same path (or override custom_reward_function.path).",
        "set -euo pipefail",
        "",
    ]
    env = _search_env(stage, out_dir)
    if env:
        lines += ["# the study-search rewards' settings, for this process and, through Ray's runtime_env, every worker",
                  *(f"export {name}={shlex.quote(value)}" for name, value in env.items()), ""]
        overrides = overrides + [f"++ray_kwargs.ray_init.runtime_env.env_vars.{name}={hydra_value(value)}"
                                 for name, value in env.items()]
    reward = [f"custom_reward_function.path={hydra_value(str(reward_file))}", "custom_reward_function.name=compute_score"]
    lines += ["# VERL releases with reward/reward.yaml in their config read reward.custom_reward_function and ignore",
              "# the top-level key; older ones know only the top-level key.",
              "REWARD=(", *(f"    {shlex.quote(item)}" for item in reward), ")",
              f"if python3 -c {shlex.quote(_NEW_REWARD_LAYOUT)} 2>/dev/null; then",
              "    REWARD+=(", *(f"        {shlex.quote('reward.' + item)}" for item in reward), "    )", "fi", "",
              *_modules(overrides),
              "python3 -m verl.trainer.main_ppo \\",
              *(f"    {shlex.quote(item)} \\" for item in overrides if not item.startswith(TARGETS_KEY + "=[")),
              *(['    "${MODULES[@]}" \\'] if any(i.startswith(TARGETS_KEY + "=[") for i in overrides) else []),
              '    "${REWARD[@]}" \\', '    "$@"', ""]
    return "\n".join(lines)


def _modules(overrides: list[str]) -> list[str]:
    """The MODULES array: a LoRA module list as VERL 0.9 takes it, or, where VERL types the field as one string,
    the regex of the same modules (overrides.module_pattern)."""
    listed = [item for item in overrides if item.startswith(TARGETS_KEY + "=[")]
    if not listed:
        return []
    modules = [m for m in listed[0].split("=", 1)[1].strip("[]").split(",") if m]
    pattern = f"{TARGETS_KEY}={hydra_value(module_pattern(modules))}"
    return ["# LoRA's modules: a list for VERL 0.9; one regex string (the same modules) for releases that type",
            "# model.target_modules as a string", f"MODULES=({shlex.quote(listed[0])})",
            f"if python3 -c {shlex.quote(_STRING_TARGETS)} 2>/dev/null; then",
            f"    MODULES=({shlex.quote(pattern)})", "fi", ""]


def _search_env(stage, out_dir: Path) -> dict[str, str]:
    """The stage's study-search settings as the environment variables a reward worker reads (rewards/search)."""
    env = {}
    if stage.search_corpus:  # prepare indexes the corpus into out_dir once the data is written
        env["POSTTRAIN_SEARCH_INDEX"] = str(Path(corpus_index(stage.search_corpus, out_dir, build=False)).resolve())
    for field, name, is_path in (("search_index", "POSTTRAIN_SEARCH_INDEX", True),
                                 ("search_backend", "POSTTRAIN_SEARCH_BACKEND", False),
                                 ("search_cache", "POSTTRAIN_SEARCH_CACHE", True)):
        value = getattr(stage, field, None)
        if value:
            env[name] = str(Path(value).expanduser().resolve()) if is_path else str(value)
    return env


def write_files(out_dir: Path, splits: dict[str, list[dict]], rewards, script: str) -> dict[str, int]:
    """Every file into a scratch dir first, then renamed into place: a failure leaves nothing half-written."""
    import pyarrow as pa

    to_row = writer(get_format("verl"))
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    try:
        with tempfile.TemporaryDirectory(prefix=".verl-prepare.", dir=out_dir) as scratch:
            scratch = Path(scratch)
            for split, records in splits.items():
                if not records:
                    continue
                rows = []
                for index, record in enumerate(records):
                    extra = {**record["extra_info"], "split": split, "index": index}
                    if rewards:
                        extra[REWARDS_KEY] = rewards
                    task = _SPLIT_SUFFIX.sub("", record["data_source"])
                    rows.append(to_row({**record, "data_source": f"{task}_{split}", "extra_info": extra}))
                try:
                    counts[split] = write_records(scratch / f"{split}.parquet", rows)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
                    raise PosttrainError(f"{split}.parquet: the records do not fit one parquet table ({e}); VERL's "
                                         f"parquet needs ground_truth and extra_info of one shape in every row"
                                         ) from None
            (scratch / "run_verl.sh").write_text(script, encoding="utf-8")
            (scratch / "run_verl.sh").chmod(0o755)
            for name in OUTPUTS:
                if (scratch / name).exists():
                    os.replace(scratch / name, out_dir / name)
                elif (out_dir / name).exists():
                    (out_dir / name).unlink()  # a test split from an earlier prepare, now empty
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return {split: counts.get(split, 0) for split in SPLITS}
