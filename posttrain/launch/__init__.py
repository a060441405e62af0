"""Training stages on several processes and nodes, while the pipeline stays in one process.

`posttrain run FILE --nproc 8` (or a `launch:` block in the file) runs each
training stage (sft, reward_model, process_reward, grpo) as `accelerate
launch ... -m posttrain.launch.worker`, one process per GPU (gloo processes
on a CPU); the `posttrain run` process keeps what is the pipeline's:
fingerprints, skipping, resuming, the manifest, eval and export stages. The
launch is how a stage ran, not what it is, so it is in no fingerprint: a
finished stage is not retrained because it was trained on another number of
processes, and a killed one resumes from its checkpoint with any number.

- `runner.py`: the parent side: writes the worker's input and the accelerate
  config, starts the launch, waits, returns rank 0's metrics.
- `worker.py`: one rank: rebuilds the stage from its input and runs it.
- `accelerate_config.py`: the accelerate config file and command.
- `engines.py`: a stage's `deepspeed:` / `fsdp:` into TrainingArguments,
  and what this machine lacks for them.
- `follower.py`: `posttrain run` on a node other than node 0.
"""

from __future__ import annotations

from pydantic import ValidationError

from posttrain import stages as stage_table
from posttrain.config.messages import error_lines
from posttrain.config.schema import LaunchSpec
from posttrain.errors import ConfigError
from posttrain.training import engines


def launched(stage, config) -> bool:
    """Whether a stage runs under `accelerate launch`: a training stage on more than one process, or one whose
    engine (DeepSpeed, FSDP) needs the distributed environment a launcher sets up even on one GPU."""
    return stage_table.trains(stage.type) and (config.launch.processes > 1 or engines.requested(stage) is not None)


def with_launch(config, launch: dict | None):
    """The config with `launch` (the command line's --nproc, --nnodes, ...) over its `launch:` block."""
    given = {key: value for key, value in (launch or {}).items() if value is not None}
    if not given:
        return config
    try:
        spec = LaunchSpec.model_validate({**config.launch.model_dump(exclude_unset=True), **given})
    except ValidationError as e:
        raise ConfigError("invalid launch settings\n" + "\n".join(f"  {line}" for line in
                                                                   error_lines(e, "launch", LaunchSpec))) from None
    return config.model_copy(update={"launch": spec})


def check(config, stages) -> None:
    """Before anything runs or a worker starts: each stage in `stages` can run on this machine (a training
    stage's engine: DeepSpeed needs CUDA and its package, a named file must exist; the GPU-only options: QLoRA,
    bf16, flash attention, Liger, vLLM, an eval stage's vLLM backend). One message lists them all, so a
    pipeline does not train for an hour and then stop at a later stage this machine cannot run."""
    found = [line for stage in stages
             for line in (*(engines.problems(stage) if stage_table.trains(stage.type) else ()),
                          *stage_table.problems(stage, config, launched(stage, config)))]
    if found:
        raise ConfigError("\n".join(dict.fromkeys(found)))
