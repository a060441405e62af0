"""DPO step time and held-out reward accuracy: posttrain's DPO stage against plain `trl.DPOTrainer`, in one run.

Why it exists: posttrain's `type: dpo` stage is TRL's DPOTrainer with
posttrain's defaults, its pair loading and its reference handling (the input
model loaded a second time, training/preference.py). None of that may make a
step slower or the model worse than TRL used directly. This script checks it
on one machine in one go: the same preference pairs (examples/data/preference/
pairs_train.jsonl, 320 pairs; pairs_eval.jsonl, 64 held-out pairs on questions
training never saw), the same ~1.7 M-parameter model (`posttrain.models.tiny`,
size "small") as the policy and the reference, and the same trainer block.

- posttrain: `posttrain.pipeline.run` with one `dpo` stage (data and
  eval_data), as a user runs it, so posttrain's defaults apply.
- posttrain + precompute: the same stage with `precompute_ref_log_probs: true`
  (the reference's log-probs computed once, before training, instead of a
  reference forward pass in every step). Its steps are shorter; the time the
  precomputation takes is in the trainer's setup, printed beside the steps.
- TRL: `DPOConfig(**the same trainer block, output_dir, report_to="none")`,
  TRL's defaults otherwise (on a machine with no GPU also `use_cpu=True`, which
  TRL's default bf16=True needs), `DPOTrainer(model=AutoModelForCausalLM...,
  train_dataset=..., eval_dataset=..., processing_class=tokenizer)`; TRL builds
  the reference itself. The rows are TRL's conversational preference rows
  (prompt, chosen and rejected as messages).
- [context] TRL with the switches posttrain's DPOConfig differs by, read off
  the config the posttrain run built.

A step is one optimizer step's start to the next one's (policy forward on
chosen and rejected, the reference's forward unless precomputed, backward,
optimizer, logging); each run's first step is a warm-up and left out. The runs
are interleaved (one of each side per repeat, the order rotating); a side's
figure is, for each step, its fastest time over the repeats, then the median
over the steps. Held-out reward accuracy is TRL's `eval_rewards/accuracies`
after the last step (the share of held-out pairs whose implicit reward
beta * log pi/pi_ref is higher for the chosen answer), the mean over repeats.

Target: posttrain's steps at least 1.2x as fast as TRL's (TRL step /
posttrain step >= 1.2) and its held-out accuracy equal to TRL's within one
pair (1/64). The script exits 1 when either is missed, or when a side did not train (a loss that
is not finite, weights that did not move).

    .venv/bin/python bench/dpo_step_time.py               # one epoch (40 steps) per run, 3 repeats (~2 min)
    .venv/bin/python bench/dpo_step_time.py --quick       # smoke test: 4 steps, 1 repeat
    .venv/bin/python bench/dpo_step_time.py --threads 1   # on a shared machine
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
warnings.filterwarnings("ignore", category=FutureWarning)

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from steps import (  # noqa: E402  (bench/ is on sys.path when a script runs)
    StepTimer,
    best,
    interleaved,
    median,
    print_noise_and_problems,
    switches,
    trained,
    weights_moved,
)
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "preference"
TRAIN, HELD_OUT = DATA / "pairs_train.jsonl", DATA / "pairs_eval.jsonl"
SEED = 42
SIZE = "small"
# The trainer block every side gets, as a user writes it in a stage's `trainer:` (max_steps added per run): the
# preference recipe's DPO block (recipes/preference/pipeline.yaml) without its evaluations and checkpoints.
TRAINER = {"learning_rate": 5e-4, "beta": 0.1, "loss_type": "sigmoid", "per_device_train_batch_size": 8,
           "per_device_eval_batch_size": 8, "max_length": 256, "logging_steps": 1, "seed": SEED}
STEP_TARGET = 1.2  # TRL's step / posttrain's step
ACCURACY_TOLERANCE = 1 / 64  # one held-out pair
ACCURACY, MARGIN = "eval_rewards/accuracies", "eval_rewards/margins"


class DPOTimer(StepTimer):
    """The step timer, with the trainer's setup time and the last held-out evaluation."""

    setup = float("nan")

    def summary(self) -> dict:
        losses = [log["loss"] for log in self.logs if "loss" in log]
        last_eval = next((log for log in reversed(self.logs) if ACCURACY in log), {})
        return {"steps": self.steps(), "losses": losses, "accuracy": last_eval.get(ACCURACY, float("nan")),
                "margin": last_eval.get(MARGIN, float("nan")), "others": self.others, "setup": self.setup,
                "train": self.train_seconds}


def run_posttrain(model_dir: Path, out: Path, steps: int, initial: dict, **trainer) -> dict:
    import trl
    from safetensors.torch import load_file

    from posttrain import pipeline

    config = {
        "name": "bench-dpo", "model": str(model_dir), "output_dir": str(out), "seed": SEED,
        "stages": [{"name": "dpo", "type": "dpo", "data": {"path": str(TRAIN), "format": "preference"},
                    "eval_data": {"path": str(HELD_OUT), "format": "preference"},
                    "trainer": {**TRAINER, "max_steps": steps, **trainer}}],
    }
    timer, original, built = DPOTimer(), trl.DPOTrainer, {}

    class Timed(original):  # the stage's own trainer (stages/dpo.py imports it from trl when it runs), timed
        def __init__(self, *args, **kwargs):
            began = time.perf_counter()
            super().__init__(*args, **kwargs)
            timer.setup = time.perf_counter() - began
            built["args"], built["dtype"] = self.args, self.model.dtype
            self.add_callback(timer)

    trl.DPOTrainer = Timed
    try:
        run_dir = pipeline.run(config, force=True)
    finally:
        trl.DPOTrainer = original
    final = load_file(str(run_dir / "dpo" / "model" / "model.safetensors"))
    return {**timer.summary(), "moved": weights_moved(initial, final), "args": built["args"], "dtype": built["dtype"]}


def trl_rows(path: Path):
    """The pairs as TRL's conversational preference rows: the answers as assistant messages, like the prompt."""
    from datasets import Dataset

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    answer = lambda text: [{"role": "assistant", "content": text}] if isinstance(text, str) else text  # noqa: E731
    return Dataset.from_list([{"prompt": r["prompt"], "chosen": answer(r["chosen"]), "rejected": answer(r["rejected"])}
                              for r in rows])


def trl_config(out: Path, steps: int, **extra):
    from trl import DPOConfig

    settings = {**TRAINER, "max_steps": steps, "report_to": "none", **extra}
    if settings.get("bf16", True) and not torch.cuda.is_available():
        settings.setdefault("use_cpu", True)  # TRL's default bf16=True refuses to start on a machine with no GPU
    return DPOConfig(output_dir=str(out), **settings)


def run_trl(model_dir: Path, out: Path, steps: int, initial: dict, **extra) -> dict:
    from trl import DPOTrainer

    timer, args = DPOTimer(), trl_config(out, steps, **extra)
    began = time.perf_counter()
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(str(model_dir)), args=args,
                         train_dataset=trl_rows(TRAIN), eval_dataset=trl_rows(HELD_OUT),
                         processing_class=AutoTokenizer.from_pretrained(str(model_dir)), callbacks=[timer])
    timer.setup = time.perf_counter() - began
    trainer.train()
    trainer.evaluate()
    final = {k: v.detach() for k, v in trainer.model.state_dict().items()}
    return {**timer.summary(), "moved": weights_moved(initial, final), "args": args, "dtype": trainer.model.dtype}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="optimizer steps per run, the first a warm-up (default 40: one "
                        "epoch of the 320 pairs in batches of 8)")
    parser.add_argument("--repeats", type=int, help="runs per side, interleaved (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--workdir", type=Path, help="where the model and runs go (default: a new temp dir)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 4 steps, 1 repeat unless given")
    parser.add_argument("--no-context", action="store_true", help="skip the TRL-with-posttrain's-switches row")
    opts = parser.parse_args()
    steps = opts.steps or (4 if opts.quick else 40)
    repeats = opts.repeats or (1 if opts.quick else 3)
    torch.set_num_threads(opts.threads)
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    import trl
    from safetensors.torch import load_file

    from posttrain.models.tiny import init_model

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    model_dir = init_model(work / "model", [TRAIN, HELD_OUT], size=SIZE, seed=0)
    initial = load_file(str(model_dir / "model.safetensors"))
    n_params = sum(v.numel() for v in initial.values())

    # untimed: one posttrain step, to warm the process up and to read the DPOConfig the stage builds
    warm = run_posttrain(model_dir, work / "warmup", 1, initial)
    extra = switches(warm["args"], trl_config(work / "probe", 1))
    sides = {"posttrain": lambda i: run_posttrain(model_dir, work / f"posttrain-{i}", steps, initial),
             "posttrain_precompute": lambda i: run_posttrain(model_dir, work / f"precompute-{i}", steps, initial,
                                                             precompute_ref_log_probs=True),
             "trl": lambda i: run_trl(model_dir, work / f"trl-{i}", steps, initial)}
    if not opts.no_context:
        sides["trl_switched"] = lambda i: run_trl(model_dir, work / f"trl-switched-{i}", steps, initial, **extra)
    runs = interleaved(sides, repeats, lambda run: f"median step {median(run['steps']) * 1000:.0f} ms, "
                                                f"held-out accuracy {run['accuracy']:.3f}")

    trl_args = runs["trl"][0]["args"]
    labels = {"posttrain": "posttrain dpo stage (pipeline.run)",
              "posttrain_precompute": "posttrain dpo stage + precompute_ref_log_probs",
              "trl": f"TRL DPOTrainer defaults (bf16={trl_args.bf16}{', use_cpu=True' if trl_args.use_cpu else ''})",
              "trl_switched": "[context] TRL + posttrain's switches"}
    print(f"\n## DPO step time and held-out reward accuracy: posttrain vs TRL DPOTrainer, {steps} steps per run "
          f"(the first a warm-up), {repeats} interleaved run(s) per side")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"cuda {torch.cuda.is_available()}; python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, trl {trl.__version__}; model {SIZE}, "
          f"{n_params / 1e6:.2f} M params")
    print(f"shared trainer block: {TRAINER} + max_steps {steps}; train {TRAIN.name} (320 pairs), held out "
          f"{HELD_OUT.name} (64 pairs)")
    print(f"posttrain's switches (its DPOConfig vs TRL's for the same block): {extra}; weights loaded as "
          + ", ".join(f"{runs[key][0]['dtype']} ({key})" for key in runs) + "\n")
    print("| run | step ms (best of repeats) | TRL / this | step ms (all runs) | setup s | train s | "
          "held-out reward accuracy | held-out margin | others' CPU | last loss | max weight change |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    results, accuracy, problems = {key: best(side) for key, side in runs.items()}, {}, []
    for key, side in runs.items():
        losses = [x for run in side for x in run["losses"]]
        moved = min(run["moved"] for run in side)
        accuracy[key] = statistics.mean(run["accuracy"] for run in side)
        problems += trained(key, side)
        each = ", ".join(f"{run['accuracy']:.3f}" for run in side)
        if not math.isfinite(accuracy[key]):
            problems.append(f"{key}: no held-out evaluation was logged")
        print(f"| {labels[key]} | {results[key] * 1000:.0f} | {results['trl'] / results[key]:.2f} | "
              f"{median([s for run in side for s in run['steps']]) * 1000:.0f} | "
              f"{median([run['setup'] for run in side]):.2f} | {median([run['train'] for run in side]):.2f} | "
              f"{accuracy[key]:.3f} ({each}) | {statistics.mean(run['margin'] for run in side):.3f} | "
              f"{max(run['others'] for run in side):.0%} | {losses[-1]:.4g} | {moved:.2e} |")
    print("\nstep: one optimizer step's start to the next one's; each run's first step left out. best of repeats: "
          "for each step its fastest time over that side's runs, then the median over the steps (the target reads "
          "this). setup s: the trainer's construction (data tokenized, reference loaded, and with "
          "precompute_ref_log_probs the reference's log-probs computed); train s: trainer.train(), all steps. "
          "held-out reward accuracy: TRL's eval_rewards/accuracies after the last step, mean (and each) over runs; "
          "held-out margin: its eval_rewards/margins (chosen's implicit reward less rejected's), mean over runs.")
    print_noise_and_problems(runs, problems)
    ratio = results["trl"] / results["posttrain"]
    gap = accuracy["posttrain"] - accuracy["trl"]
    step_ok, accuracy_ok = ratio >= STEP_TARGET, gap >= -ACCURACY_TOLERANCE
    print(f"\ntarget: posttrain {STEP_TARGET:.1f}x TRL's steps (TRL step / posttrain step >= {STEP_TARGET:.1f}): "
          f"{ratio:.2f} ({results['trl'] * 1000:.0f} ms / {results['posttrain'] * 1000:.0f} ms) "
          f"{'PASS' if step_ok else 'FAIL'}")
    print(f"target: posttrain's held-out reward accuracy equal to TRL's within one pair (>= {accuracy['trl']:.3f} - "
          f"{ACCURACY_TOLERANCE:.3f}): {accuracy['posttrain']:.3f} {'PASS' if accuracy_ok else 'FAIL'}")
    print(f"precompute_ref_log_probs: step {results['posttrain_precompute'] * 1000:.0f} ms vs "
          f"{results['posttrain'] * 1000:.0f} ms, setup + train "
          f"{median([r['setup'] + r['train'] for r in runs['posttrain_precompute']]):.2f} s vs "
          f"{median([r['setup'] + r['train'] for r in runs['posttrain']]):.2f} s")
    print(f"work dir: {work}")
    raise SystemExit(0 if step_ok and accuracy_ok and not problems else 1)


if __name__ == "__main__":
    main()
