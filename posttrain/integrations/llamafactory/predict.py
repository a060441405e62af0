"""LLaMA-Factory's do_predict: generate on eval_dataset and score the answers, as posttrain's eval stage does.

LLaMA-Factory's predict (examples/extras/nlg_eval) has the model, trained or given by adapter_name_or_path, answer
every eval_dataset example and reports BLEU-4 and ROUGE-1/2/L against the reference answers. A recipe with
do_predict gets an eval stage with metrics bleu and rouge: after its training stage, or alone when the recipe has
no do_train. Its generation keys become the stage's settings, with LLaMA-Factory's defaults where it gives none
(it samples: temperature 0.95, top_p 0.7, at most 1024 new tokens).
"""

from __future__ import annotations

from posttrain.integrations.llamafactory import unapplied
from posttrain.integrations.llamafactory.recipe_values import names, pipeline_name

GENERATION = ("do_sample", "temperature", "top_p", "max_new_tokens")  # the eval stage's fields of the same name
DEFAULTS = {"do_sample": True, "temperature": 0.95, "top_p": 0.7, "max_new_tokens": 1024}  # LLaMA-Factory's
UNAPPLIED = ("top_k", "num_beams", "repetition_penalty", "length_penalty", "skip_special_tokens")
KEYS = {"do_predict", "predict_with_generate", "per_device_eval_batch_size", *GENERATION, *UNAPPLIED}
# what a predict-only recipe reads besides KEYS; the rest are training settings with nothing to train
READ = {"stage", "do_train", "model_name_or_path", "trust_remote_code", "seed", "output_dir", "template",
        "adapter_name_or_path", "finetuning_type", "eval_dataset", "dataset_dir", "max_samples"}
TOP = {"model_name_or_path": "model", "trust_remote_code": "trust_remote_code", "seed": "seed",
       "output_dir": "output_dir"}


def only(recipe: dict) -> bool:
    """A recipe that predicts without training (LLaMA-Factory's do_train is false unless set)."""
    return bool(recipe.get("do_predict")) and not recipe.get("do_train")


def eval_stage(recipe: dict, models: list[str], warn, fail, data) -> dict:
    settings = {**DEFAULTS, **{key: recipe[key] for key in GENERATION if key in recipe}}
    stage = {"name": "predict", "type": "eval", "models": models, "data": [data(recipe, "eval_dataset", fail)],
             "metrics": ["bleu", "rouge"], **settings}
    if "per_device_eval_batch_size" in recipe:
        stage["batch_size"] = int(recipe["per_device_eval_batch_size"])
    if recipe.get("predict_with_generate") is False:
        warn("predict_with_generate", "false; posttrain's eval stage always generates and scores the answers")
    for key in UNAPPLIED:
        if key in recipe:
            warn(key, "a generation setting posttrain's eval stage does not have")
    return stage


def after_training(recipe: dict, stage: dict, warn, fail, data, out: dict) -> None:
    """The eval stage a do_predict training recipe ends with; the generation keys, said unused, when none."""
    if recipe.get("do_predict"):
        out["after"].append(eval_stage(recipe, [stage["name"]], warn, fail, data))
        return
    for key in sorted(KEYS & set(recipe) - {"do_predict", "per_device_eval_batch_size"}):
        warn(key, unapplied.REASONS.get(key, "a generation setting of LLaMA-Factory's predict, and this recipe "
                                             "does not predict"))
    if "per_device_eval_batch_size" in recipe:
        out["trainer"]["per_device_eval_batch_size"] = recipe["per_device_eval_batch_size"]


def pipeline(recipe: dict, warn, fail, data, template, report) -> dict:
    """A predict-only recipe: the pipeline of one eval stage, with the base model or the given adapter on it."""
    adapters = names(recipe.get("adapter_name_or_path", ""))
    if len(adapters) > 1:
        fail("adapter_name_or_path", f"{len(adapters)} adapters; posttrain evaluates one (merge the others into "
                                     "the base first with `posttrain export`)")
    stage = eval_stage(recipe, adapters or ["base"], warn, fail, data)
    if "template" in recipe:
        template(recipe["template"], stage, warn)
    for key in sorted(set(recipe) - READ - KEYS):
        warn(key, "a training setting, and this recipe only predicts (do_predict without do_train)")
    report()
    top = {TOP[key]: recipe[key] for key in TOP if key in recipe}
    return {"name": pipeline_name(recipe.get("output_dir"), "predict"), **top, "stages": [stage]}
