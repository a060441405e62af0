"""A training stage's `deepspeed:` or `fsdp:`, handed to TrainingArguments, and what this machine lacks for it.

Both go to TrainingArguments (`deepspeed`, `fsdp` + `fsdp_config`), not to
a section of the accelerate config posttrain writes: transformers 5 builds
accelerate's DeepSpeed and FSDP plugins itself from those fields
(`HfTrainerDeepSpeedConfig`, `_process_fsdp_args`), and only that path fills
a DeepSpeed file's "auto" values (batch sizes, accumulation, clipping,
precision) from the stage's trainer settings. So a stage says it once, and
it holds under `accelerate launch`, torchrun or a cluster's own launcher;
the accelerate config only says how many processes start and where they meet.

`deepspeed: zero2 | zero3` names the JSON files beside this module (the
ZeRO-2/3 files LLaMA-Factory and the HF docs ship, "auto" throughout); any
other value is a DeepSpeed JSON file. `fsdp:` is `true` (FSDP2 with
transformers' defaults), a mapping (TrainingArguments' `fsdp_config`), a
path to such a JSON file, or transformers' legacy option string
("full_shard auto_wrap"). A machine that cannot run what a stage asks is a
ConfigError naming what is missing, before anything runs and in
`posttrain validate`, not an ImportError deep inside a library.
"""

from __future__ import annotations

import json
from pathlib import Path

from posttrain import machine as gpu
from posttrain.config.schema import ZERO_STAGES
from posttrain.errors import ConfigError

ZERO = {name: f"{name}.json" for name in ZERO_STAGES}


def cuda() -> bool:  # the one place the machine is asked (and tests stand in a GPU machine)
    return gpu.cuda()


def has_package(name: str) -> bool:
    return gpu.installed(name)


def requested(stage) -> str | None:
    """"deepspeed", "fsdp" or None: from the stage's fields or the same keys in its trainer block."""
    trainer = getattr(stage, "trainer", {}) or {}
    if getattr(stage, "deepspeed", None) or trainer.get("deepspeed"):
        return "deepspeed"
    if getattr(stage, "fsdp", None) or trainer.get("fsdp"):
        return "fsdp"
    return None


def deepspeed_file(stage) -> str | None:
    value = getattr(stage, "deepspeed", None) or stage.trainer.get("deepspeed")
    if isinstance(value, str) and value in ZERO:
        return str(Path(__file__).with_name(ZERO[value]))
    return value if isinstance(value, str) else None


def user_file(stage) -> str | None:
    """The DeepSpeed or FSDP JSON file a stage names (not zero2/zero3, which ship with posttrain): what it says
    changes the training and the checkpoints' format, so the stage's fingerprint covers its content."""
    if requested(stage) == "deepspeed":
        value = getattr(stage, "deepspeed", None) or stage.trainer.get("deepspeed")
    else:
        value = getattr(stage, "fsdp", None) or stage.trainer.get("fsdp_config")
    return value if isinstance(value, str) and value.endswith(".json") else None


def problems(stage) -> list[str]:
    """What keeps this machine from running the stage's engine; empty when it can."""
    kind = requested(stage)
    where = f"stages.{stage.name}.{kind}"
    found = []
    if kind == "deepspeed":
        missing = [what for what, ok in (("the deepspeed package (pip install deepspeed)", has_package("deepspeed")),
                                         ("a CUDA GPU", cuda())) if not ok]
        if missing:
            found.append(f"{where}: DeepSpeed needs {' and '.join(missing)}, which this machine lacks; train "
                         "without it here (leave `deepspeed:` out: plain DDP), or on a machine that has them")
        found += _json_problems(deepspeed_file(stage), where)
    elif kind == "fsdp":
        if not cuda():  # accelerate 1.15 turns FSDP on for GPU processes only: CPU ones would train as plain DDP
            found.append(f"{where}: FSDP needs CUDA GPUs, which this machine lacks (on CPU processes accelerate "
                         "would silently train with plain DDP instead); leave `fsdp:` out here")
        found += _json_problems(user_file(stage), where)
    return found


def _json_problems(path: str | None, where: str) -> list[str]:
    if path is None:
        return []
    try:
        json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError:
        return [f"{where}: {path}: no such file (give zero2, zero3 or a DeepSpeed/FSDP JSON file)"]
    except json.JSONDecodeError as e:
        return [f"{where}: {path}:{e.lineno}: not valid JSON ({e.msg})"]
    return []


def apply(settings: dict, stage) -> None:
    """Put the stage's engine into its trainer settings; a ConfigError when this machine cannot run it."""
    found = problems(stage)
    if found:
        raise ConfigError("\n".join(found))
    if getattr(stage, "deepspeed", None):
        settings["deepspeed"] = deepspeed_file(stage)
    elif getattr(stage, "fsdp", None):
        fsdp = stage.fsdp
        if isinstance(fsdp, dict) or (isinstance(fsdp, str) and fsdp.endswith(".json")):
            settings.update(fsdp=True, fsdp_config=dict(fsdp) if isinstance(fsdp, dict) else fsdp)
        else:
            settings["fsdp"] = fsdp  # true, or transformers' legacy option string
    elif isinstance(settings.get("deepspeed"), str) and settings["deepspeed"] in ZERO:
        settings["deepspeed"] = deepspeed_file(stage)
