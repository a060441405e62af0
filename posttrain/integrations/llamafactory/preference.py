"""LLaMA-Factory's preference keys (`pref_*`, `kto_*`, `simpo_gamma`, ...) as the TRL config fields they mean.

LLaMA-Factory runs DPO, ORPO and SimPO as one `stage: dpo` told apart by
`pref_loss`; posttrain has a stage type for each, so `pref_loss: orpo|simpo`
picks the stage type and the other values pick DPO's `loss_type`. A key
with no equivalent in the installed TRL is named in a warning; a value
LLaMA-Factory itself cannot run (`kto_pair`, which TRL removed) is an error.
"""

from __future__ import annotations

KEYS = ("pref_beta", "pref_loss", "pref_ftx", "dpo_label_smoothing", "simpo_gamma", "ld_alpha", "pref_bco_weight",
        "kto_chosen_weight", "kto_rejected_weight")
DPO_LOSSES = ("sigmoid", "hinge", "ipo")
OWN_STAGE = ("orpo", "simpo")  # reference-free: a stage type of their own in posttrain


def stage_type(stage: str, recipe: dict, fail) -> str | None:
    """The posttrain stage type a `stage: dpo` recipe is, by its pref_loss (None: not a dpo recipe)."""
    if stage != "dpo":
        return None
    loss = recipe.get("pref_loss", "sigmoid")
    if loss == "kto_pair":
        fail("pref_loss", "kto_pair: TRL removed this loss; train on the pairs' answers unpaired with stage: kto")
    if loss not in DPO_LOSSES + OWN_STAGE:
        fail("pref_loss", f"{loss!r}: expected one of {', '.join(DPO_LOSSES + OWN_STAGE)}")
    return loss if loss in OWN_STAGE else "dpo"


def translate(kind: str, recipe: dict, trainer: dict, warn) -> None:
    """Put the recipe's preference keys into the `trainer:` block of a `kind` stage."""
    given = {key: recipe[key] for key in KEYS if key in recipe}
    if kind not in ("dpo", "kto", "orpo", "simpo"):
        for key in given:
            warn(key, f"a preference key, and stage type {kind} has no preference loss; ignored")
        return
    if "pref_beta" in given:  # ORPO's λ and SimPO's β have this name in TRL's configs too
        trainer["beta"] = given.pop("pref_beta")
    given.pop("pref_loss", None)  # it chose the stage type (stage_type above) or DPO's loss_type (below)
    if kind == "dpo":
        _dpo(recipe, given, trainer, warn)
    elif kind == "kto":
        for key, field in (("kto_chosen_weight", "desirable_weight"), ("kto_rejected_weight", "undesirable_weight")):
            if key in given:
                trainer[field] = given.pop(key)
        _kto_batch(trainer, warn)
    elif kind == "simpo":
        if "simpo_gamma" in given:
            trainer["simpo_gamma"] = given.pop("simpo_gamma")
        if "pref_ftx" in given:  # CPO's NLL weight on the chosen answer is LLaMA-Factory's SFT term
            trainer["cpo_alpha"] = given.pop("pref_ftx")
    for key, value in given.items():
        if value not in (0, 0.0, None) and not (key.startswith("kto_") and value == 1.0):
            warn(key, f"TRL's {kind} trainer has no equivalent; ignored")


def _dpo(recipe: dict, given: dict, trainer: dict, warn) -> None:
    loss = recipe.get("pref_loss", "sigmoid")
    ftx = given.pop("pref_ftx", 0.0)
    if ftx:  # LLaMA-Factory adds ftx × the chosen answer's mean token NLL: TRL's `sft` loss, weighted
        trainer.update(loss_type=[loss, "sft"], loss_weights=[1.0, float(ftx)])
    elif loss != "sigmoid":
        trainer["loss_type"] = loss
    if "ld_alpha" in given:
        trainer["ld_alpha"] = given.pop("ld_alpha")
    if given.pop("dpo_label_smoothing", 0.0):
        warn("dpo_label_smoothing", "TRL 1.x's sigmoid loss has no label smoothing (cDPO); loss_type: robust is "
                                    "the nearest (rDPO, a different formula) and takes label_smoothing; ignored")


def _kto_batch(trainer: dict, warn) -> None:
    """LLaMA-Factory pairs each answer with another prompt's for KTO's KL term while preprocessing, so a batch of 1
    works there; TRL pairs them within the batch and refuses 1. The same examples per step, as one batch."""
    size, steps = trainer.get("per_device_train_batch_size", 8), trainer.get("gradient_accumulation_steps", 1)
    if size > 1 or steps <= 1:
        return
    trainer.update(per_device_train_batch_size=size * steps, gradient_accumulation_steps=1)
    warn("per_device_train_batch_size", f"{size} with gradient_accumulation_steps {steps}: TRL's KTO estimates its "
                                        f"KL term within a batch, so this trains batches of {size * steps} (the same "
                                        "examples per optimizer step)")
