"""The `type: export` stage: the run's model as one standalone directory, at the end of the pipeline that made it.

`model:` names an earlier stage (a LoRA stage's adapter is merged into its
base, chained adapters included) or a directory; the stage writes what
`posttrain export` writes to `<stage>/model`, verified against the unmerged
model unless `verify: false`, with a model card describing the run. Its
fingerprint covers the input model's, so retraining that stage re-exports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import model_validator

from posttrain.config.schema import StageConfig
from posttrain.errors import PosttrainError
from posttrain.export import export
from posttrain.stages import StageContext

TRAINS = False
RECORD = None


class Config(StageConfig):
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


def plan(stage, pipeline, output_dir=None) -> None:
    """What validate can check before anything runs: the verification prompts file."""
    if stage.prompts and not Path(stage.prompts).is_file():
        raise PosttrainError(f"stages.{stage.name}.prompts: {stage.prompts}: no such file")


def run(ctx: StageContext) -> dict:
    stage, pipeline = ctx.stage, ctx.pipeline
    plan(stage, pipeline)
    # a previous attempt killed after its rename left a whole export; it is replaced, never half-reused
    summary = export(ctx.model_path, out=ctx.model_dir, dtype=stage.dtype, verify=stage.verify,
                     prompts=stage.prompts, template=stage.template or pipeline.template,
                     trust_remote_code=pipeline.trust_remote_code, force=True, exclude_stage=stage.name)
    metrics = {"dtype": summary["dtype"], "base": summary["base"], "adapters": summary["adapters"]}
    if summary["verify"]:
        check = summary["verify"]
        metrics.update(verify_max_abs_diff=check["max_abs_diff"], verify_tolerance=check["tolerance"],
                       verify_top1_agreement=check["top1_agreement"])
    return metrics
