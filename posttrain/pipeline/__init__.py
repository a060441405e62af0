"""The pipeline: a YAML file's stages run in order, skipped when done, resumed when not.

loop.py is `run` (the loop, the lock, the manifest's writes), plan.py what it decides (each stage's input
model and fingerprint, what an eval stage compares), manifest.py the manifest it writes, follower.py
`posttrain run` on a node other than node 0, validate.py `posttrain validate`. The loop is named loop.py so
that `posttrain.pipeline.run` is the function, as it always was.
"""

from __future__ import annotations

from posttrain.pipeline.loop import run
from posttrain.pipeline.plan import input_model, reward_models, stage_fingerprint, stage_output
from posttrain.runs.manifest import read_manifest, stage_states

__all__ = ["input_model", "read_manifest", "reward_models", "run", "stage_fingerprint", "stage_output",
           "stage_states"]
