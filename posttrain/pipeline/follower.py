"""`posttrain run FILE --nnodes N --node-rank R` on a node other than node 0: lend processes, write nothing.

Node 0's `posttrain run` keeps the manifest and its rank 0 writes the
models, so this one only starts its share of each training stage's
processes. It must start the same stages node 0 starts, or the rendezvous
would wait for processes that never come: it makes the same decisions from
the same inputs (the config, the models, the data, the run directory's
manifest, which all nodes must see on a shared filesystem), and after each
stage it reads what node 0 recorded (the run id a later stage's fingerprint
covers). Eval stages run on node 0 alone; an export stage a later stage
starts from is waited for. A training stage is launched here only once node
0 has started it: node 0 may first spend hours on an eval or export stage
alone, and the launchers' rendezvous gives up after ten minutes.
"""

from __future__ import annotations

import time
from pathlib import Path

from posttrain import stages
from posttrain.errors import PosttrainError
from posttrain.launch import runner
from posttrain.pipeline.plan import (consumers, eval_models, input_model, output_fingerprint, reward_models,
                                     stage_fingerprint, stage_output)
from posttrain.runs.manifest import read_manifest

WAIT_FOR_MANIFEST_S = 600.0  # node 0 may start a little later, or be busy with a data check
WAIT_AFTER_STAGE_S = 600.0  # node 0's workers have finished with ours: only its bookkeeping is left
WAIT_FOR_EXPORT_S = 6 * 3600.0  # node 0 merges and saves (and verifies) a model alone: long, but not forever
WAIT_FOR_START_S = 24 * 3600.0  # node 0 may run long eval and export stages alone before a training stage


def follow(config, selected: set[str], force: bool, console, poll: float = 1.0) -> Path:
    run_dir = Path(config.output_dir)
    launch = config.launch
    console.print(f"[dim]node {launch.node_rank} of {launch.nnodes}: {launch.nproc} processes per stage here; node 0 "
                  f"({launch.master_addr}) keeps {run_dir / 'manifest.json'}[/dim]", highlight=False)
    before = _wait_for(lambda: read_manifest(run_dir), WAIT_FOR_MANIFEST_S, poll,
                       f"{run_dir / 'manifest.json'} did not appear; is node 0's `posttrain run` started, and is "
                       f"{run_dir} on a filesystem every node shares?")["stages"]
    outputs: dict[str, str] = {}
    base_fingerprints: dict[str, str] = {}
    run_here = {s.name for s in config.stages if s.name in selected and s.type != "eval"}  # eval: node 0 alone
    for stage in config.stages:
        model_path, model_fp = input_model(stage, config, outputs, base_fingerprints)
        fingerprint = stage_fingerprint(stage, config, model_fp, reward_models(stage, config, outputs),
                                        eval_models(stage, config, outputs, base_fingerprints))
        entry = before.get(stage.name, {})
        stage_dir = run_dir / stage.name
        done = (entry.get("status") == "done" and entry.get("fingerprint") == fingerprint
                and stage_output(stage, stage_dir).exists())
        # a stage without workers here matters to this node only when a later training stage starts from it
        unused = not stages.trains(stage.type) and not consumers(stage.name, config, run_here)
        if stage.name not in selected or (done and not force) or stage.type == "eval" or unused:
            if done:
                outputs[stage.name] = output_fingerprint(fingerprint, entry)
            continue
        # an entry that had ended when this node started is an earlier attempt's (node 0 runs the stage again: it
        # changed, its output is gone, or --force); one still running is this attempt's
        stale = entry.get("run_id") if entry.get("status") in ("done", "failed", "interrupted") else None
        if stages.trains(stage.type):
            _wait_for(lambda: _recorded(read_manifest(run_dir), stage.name, fingerprint, stale, ("running", "done")),
                      WAIT_FOR_START_S, poll, f"node 0 did not start stage {stage.name}")
            console.print(f"[bold cyan]▶ {stage.name}[/bold cyan] ({stage.type}) from {model_path}: "
                          f"{launch.nproc} of {launch.processes} processes", highlight=False)
            runner.run_stage(stages.StageContext(config, stage, model_path, stage_dir), collect=False)
        entry = _wait_for(lambda: _recorded(read_manifest(run_dir), stage.name, fingerprint, stale, ("done",)),
                          WAIT_AFTER_STAGE_S if stages.trains(stage.type) else WAIT_FOR_EXPORT_S, poll,
                          f"node 0 did not record stage {stage.name} as done")
        outputs[stage.name] = output_fingerprint(fingerprint, entry)
        console.print(f"[green]✓ {stage.name}[/green] done (node 0 wrote {stage_output(stage, stage_dir)})")
    return run_dir


def _recorded(manifest: dict | None, name: str, fingerprint: str, stale_run_id: str | None,
              statuses: tuple[str, ...]) -> dict | None:
    """Node 0's entry for this attempt at stage `name` once its status is one of `statuses`; raises if it failed."""
    entry = (manifest or {}).get("stages", {}).get(name, {})
    if entry.get("fingerprint") != fingerprint or (stale_run_id and entry.get("run_id") == stale_run_id):
        return None
    if entry.get("status") == "failed":
        raise PosttrainError(f"stage {name} failed on node 0: {entry.get('error', 'see its output')}")
    if entry.get("status") == "interrupted":  # Ctrl-C there: every node resumes with the same command
        raise PosttrainError(f"stage {name} was interrupted on node 0; run the same command again on every node "
                             "to resume it")
    return entry if entry.get("status") in statuses else None


def _wait_for(found, timeout: float | None, poll: float, message: str):
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        value = found()
        if value:
            return value
        if deadline is not None and time.monotonic() > deadline:
            raise PosttrainError(message)
        time.sleep(poll)
