"""GRPO step time: posttrain's GRPO stage against plain `trl.GRPOTrainer` with the same settings, in one run.

Why it exists: posttrain's GRPO stage is TRL's GRPOTrainer with posttrain's
defaults and its data, reward and logging plumbing around it. None of that may
make a step slower than TRL used directly. This script checks it on one
machine in one go: the same seeded sample-size prompts (rl_prompt records),
the same ~1.7 M-parameter model (`posttrain.models.tiny`, size "small") as the
starting point, the same trainer block (num_generations 4, batch 8,
completions of up to 32 tokens, learning rate, temperature, steps, logging,
seed) and the same reward functions from posttrain's library, with the same
weights.

- posttrain: `posttrain.pipeline.run` with one `grpo` stage, as a user runs it,
  so posttrain's own defaults apply (training/defaults.py).
- TRL: `GRPOConfig(**the same trainer block, output_dir, report_to="none")`,
  TRL's defaults otherwise, and `GRPOTrainer(model=AutoModelForCausalLM...,
  reward_funcs=..., processing_class=tokenizer)`. On a machine with no GPU it
  also needs `use_cpu=True`: TRL's default bf16=True refuses to start without.
- [context] TRL with the switches posttrain sets where TRL's defaults differ,
  read off the GRPOConfig the posttrain run really built (not a list kept
  here), so a reader sees where a difference comes from.

A step is the time from one optimizer step's start to the next one's
(generation, reward scoring, log-prob forward, backward, optimizer, logging);
each run's first step is a warm-up and is left out; model loading, data
preparation and saving are outside the steps. The runs are interleaved (one
of each side per repeat, the order rotating). Every run does the same work at
step j (same seed, same samples; the script checks the rewards), so a side's
figure is, for each step, its fastest time over the repeats, then the median
over the steps: a burst of other processes' work slows some runs' steps,
rarely all of them. The ratio is TRL's step / posttrain's: above 1.0,
posttrain is faster. Target: posttrain 1.5x TRL's defaults (ratio >= 1.5); the script
exits 1 when it is missed, or when a side did not train (a loss that is not
finite, weights that did not move).

    .venv/bin/python bench/grpo_step_time.py                 # 15 timed steps per run, 3 repeats (~1 min)
    .venv/bin/python bench/grpo_step_time.py --quick         # smoke test: 3 steps, 1 repeat
    .venv/bin/python bench/grpo_step_time.py --threads 1     # on a shared machine: see below
    .venv/bin/python bench/grpo_step_time.py --set cache_implementation=static   # a GRPOConfig option, both sides

Torch uses every core by default. On a machine other processes are using,
that makes steps wildly uneven (a step's threads wait for each other while
one of them is descheduled); `--threads 1` is much steadier there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5's renames, which TRL still uses

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

SEED = 42
SIZE = "small"
# The trainer block both sides get, as a user writes it in a pipeline's `trainer:` (max_steps is added per run).
# TRL's default learning rate (1e-6) hardly moves the weights in a few steps; both sides get 1e-5.
TRAINER = {"num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 32,
           "learning_rate": 1e-5, "temperature": 1.0, "logging_steps": 1, "seed": SEED}
# The task reward, and a dense one: a random model never writes the <think>/<answer> tags, so
# sample_size_estimation scores -2 for every completion and alone would give every group zero advantage (no
# gradient). medical_dialogue_quality (length bands, ROUGE-L against the reference, punctuation, word variety)
# varies within a group, so the policy loss has a real gradient on both sides.
REWARDS = [("sample_size_estimation", 1.0), ("medical_dialogue_quality", 0.5)]
TARGET = 1.5  # TRL's step / posttrain's step

SYSTEM = "You are a careful assistant for clinical-trial design."
QUESTIONS = [
    "A trial randomizes {n} participants to each of {k} arms. How many participants are enrolled in total?",
    "How many participants does a {k}-arm trial need if every arm enrolls {n}?",
    "A randomized trial has {k} arms with {n} participants in each arm. What is the total sample size?",
    "Each of the {k} arms of a trial recruits {n} patients. How many patients are recruited overall?",
]


def make_prompts(n: int, seed: int) -> list[dict]:
    """rl_prompt records: sample-size questions with the total as the target and a worked answer as reference."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        arms, per_arm = rng.randint(2, 4), 5 * rng.randint(2, 60)
        total = arms * per_arm
        question = rng.choice(QUESTIONS).format(n=per_arm, k=arms)
        reference = (f"<think>{arms} arms of {per_arm} each: {arms} x {per_arm} = {total}.</think> "
                     f"<answer>{total}</answer>")
        rows.append({"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
                     "data_source": "sample_size_estimation",
                     "ground_truth": {"target": total, "answer_type": "total", "reference": reference},
                     "extra_info": {"split": "train", "index": i}})
    return rows


class GRPOTimer(StepTimer):
    """The step timer, with each step's generation and reward scoring timed apart (TRL's own method)."""

    def __init__(self):
        super().__init__()
        self.generating: list[float] = []

    def attach(self, trainer) -> None:
        """Add the timer to a trainer, and time its generation + reward scoring on the way."""
        trainer.add_callback(self)
        generate = getattr(trainer, "_generate_and_score_completions", None)
        if generate is None:  # another TRL version: no split of the step
            return

        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return generate(*args, **kwargs)
            finally:
                self.generating.append(time.perf_counter() - began)

        trainer._generate_and_score_completions = timed

    def summary(self) -> dict:
        # one generation per step here (steps_per_generation = gradient_accumulation_steps = 1)
        generating = self.generating[1:] if len(self.generating) == len(self.begins) else []
        per_step = [log for log in self.logs if "loss" in log]
        return {"steps": self.steps(), "generating": generating, "losses": [log["loss"] for log in per_step],
                "rewards": [log.get("reward") for log in per_step],
                "lengths": [log.get("completions/mean_length") for log in per_step], "others": self.others}


def run_posttrain(model_dir: Path, data_file: Path, out: Path, steps: int, initial: dict) -> dict:
    import trl
    from safetensors.torch import load_file

    from posttrain import pipeline

    config = {
        "name": "bench-grpo", "model": str(model_dir), "output_dir": str(out),
        "stages": [{"name": "grpo", "type": "grpo", "data": {"path": str(data_file), "format": "rl_prompt"},
                    "rewards": [{"name": name, "weight": weight} for name, weight in REWARDS],
                    "trainer": {**TRAINER, "max_steps": steps}}],
    }
    timer, original, built = GRPOTimer(), trl.GRPOTrainer, {}

    class Timed(original):  # the stage's own trainer (stages/grpo imports it from trl when it runs), timed
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built["args"], built["dtype"] = self.args, self.model.dtype
            timer.attach(self)

    trl.GRPOTrainer = Timed
    try:
        run_dir = pipeline.run(config, force=True)
    finally:
        trl.GRPOTrainer = original
    final = load_file(str(run_dir / "grpo" / "model" / "model.safetensors"))
    return {**timer.summary(), "moved": weights_moved(initial, final), "args": built["args"], "dtype": built["dtype"]}


def trl_config(out: Path, steps: int, **extra):
    from trl import GRPOConfig

    settings = {**TRAINER, "max_steps": steps, "reward_weights": [weight for _, weight in REWARDS],
                "report_to": "none", **extra}
    if settings.get("bf16", True) and not torch.cuda.is_available():
        # TRL's default bf16=True refuses to start on a machine with no GPU without it
        settings.setdefault("use_cpu", True)
    return GRPOConfig(output_dir=str(out), **settings)


def run_trl(model_dir: Path, rows: list[dict], out: Path, steps: int, initial: dict, **extra) -> dict:
    from datasets import Dataset
    from trl import GRPOTrainer

    from posttrain.rewards.adapters import trl_reward

    timer = GRPOTimer()
    args = trl_config(out, steps, **extra)
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model_dir)),
        reward_funcs=[trl_reward(name) for name, _ in REWARDS],  # the library's rewards, as TRL reward functions
        args=args,
        train_dataset=Dataset.from_list([{"prompt": r["prompt"], "ground_truth": r["ground_truth"]} for r in rows]),
        processing_class=AutoTokenizer.from_pretrained(str(model_dir)),
    )
    timer.attach(trainer)
    trainer.train()
    final = {k: v.detach() for k, v in trainer.model.state_dict().items()}
    return {**timer.summary(), "moved": weights_moved(initial, final), "args": args, "dtype": trainer.model.dtype}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="timed steps per run, after one warm-up step (default 15)")
    parser.add_argument("--repeats", type=int, help="runs per side, interleaved (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--workdir", type=Path, help="where data, model and runs go (default: a new temp dir)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 steps, 1 repeat unless given")
    parser.add_argument("--no-context", action="store_true", help="skip the TRL-with-posttrain's-switches row")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="add to the trainer block both sides share (VALUE as YAML, as in `posttrain run` overrides), e.g. "
                        "cache_implementation=static; repeatable")
    opts = parser.parse_args()
    from posttrain.config.load import apply_override
    from posttrain.errors import ConfigError

    for option in opts.set:
        try:
            apply_override(TRAINER, option)  # as `posttrain run FILE key=value` reads a value
        except ConfigError as e:
            parser.error(f"--set: {e}")
    steps = opts.steps or (3 if opts.quick else 15)
    repeats = opts.repeats or (1 if opts.quick else 3)
    max_steps = steps + 1  # the first step is a warm-up
    torch.set_num_threads(opts.threads)
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="grpo-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    import trl
    from safetensors.torch import load_file

    from posttrain.models.tiny import init_model

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    prompts_per_step = TRAINER["per_device_train_batch_size"] // TRAINER["num_generations"]
    rows = make_prompts(max(64, prompts_per_step * max_steps), seed=SEED)
    data_file = work / "prompts.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    model_dir = init_model(work / "model", [data_file], size=SIZE, seed=0)
    initial = load_file(str(model_dir / "model.safetensors"))
    n_params = sum(v.numel() for v in initial.values())

    # untimed: one posttrain step, to warm the process up and to read the GRPOConfig the stage builds
    warm = run_posttrain(model_dir, data_file, work / "warmup", 1, initial)
    extra = switches(warm["args"], trl_config(work / "probe", 1))
    sides = {"posttrain": lambda i: run_posttrain(model_dir, data_file, work / f"posttrain-{i}", max_steps, initial),
             "trl": lambda i: run_trl(model_dir, rows, work / f"trl-{i}", max_steps, initial)}
    if not opts.no_context:
        sides["trl_switched"] = lambda i: run_trl(model_dir, rows, work / f"trl-switched-{i}", max_steps, initial,
                                                  **extra)
    runs = interleaved(sides, repeats, lambda run: f"median step {median(run['steps']) * 1000:.0f} ms")

    trl_args = runs["trl"][0]["args"]
    labels = {"posttrain": "posttrain grpo stage (pipeline.run)",
              "trl": f"TRL GRPOTrainer defaults (bf16={trl_args.bf16}, grad ckpt={trl_args.gradient_checkpointing}"
                     f"{', use_cpu=True' if trl_args.use_cpu else ''})",
              "trl_switched": "[context] TRL + posttrain's switches"}
    print(f"\n## GRPO step time: posttrain vs TRL GRPOTrainer, {steps} timed steps per run (+1 warm-up), "
          f"{repeats} interleaved run(s) per side")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"cuda {torch.cuda.is_available()}; python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, trl {trl.__version__}, datasets {datasets.__version__}; "
          f"model {SIZE}, {n_params / 1e6:.2f} M params")
    print(f"shared trainer block: {TRAINER} + max_steps {max_steps}; rewards (name, weight) {REWARDS}; "
          f"{len(rows)} prompts")
    print(f"posttrain's switches (its GRPOConfig vs TRL's for the same block): {extra}; weights loaded as "
          + ", ".join(f"{runs[key][0]['dtype']} ({key})" for key in runs) + "\n")
    print("| run | step ms (best of repeats) | TRL / this | step ms (all runs) | per-run medians ms | "
          "generate + score ms | rest of step ms | others' CPU | mean reward | completion tokens | last loss | "
          "max weight change |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")

    results, problems = {}, []
    for key, side in runs.items():
        results[key] = best(side, lambda run, j: run["steps"][j])
    for key, side in runs.items():
        rewards = [r for run in side for r in run["rewards"] if r is not None]
        lengths = [x for run in side for x in run["lengths"] if x is not None]
        losses = [x for run in side for x in run["losses"]]
        moved = min(run["moved"] for run in side)
        problems += trained(key, side)
        split = all(len(run["generating"]) == len(run["steps"]) for run in side)
        generating = best(side, lambda run, j: run["generating"][j]) if split else float("nan")
        rest = best(side, lambda run, j: run["steps"][j] - run["generating"][j]) if split else float("nan")
        per_run = ", ".join(f"{median(run['steps']) * 1000:.0f}" for run in side)
        print(f"| {labels[key]} | {results[key] * 1000:.0f} | {results['trl'] / results[key]:.2f} | "
              f"{median([s for run in side for s in run['steps']]) * 1000:.0f} | {per_run} | "
              f"{generating * 1000:.0f} | {rest * 1000:.0f} | {max(run['others'] for run in side):.0%} | "
              f"{statistics.mean(rewards):.3f} | {statistics.mean(lengths):.1f} | {losses[-1]:.4g} | {moved:.2e} |")
    print()
    for key in [key for key in runs if key != "trl"]:
        print(f"{labels[key]}: TRL / this per repeat (median steps of runs made one after the other): "
              + ", ".join(f"{median(t['steps']) / median(r['steps']):.2f}" for r, t in zip(runs[key], runs["trl"])))
    for key, side in runs.items():
        if any(run["rewards"] != side[0]["rewards"] for run in side):
            print(f"note: the runs of {key} logged different rewards, so they did not all do the same work; "
                  "the best-of-repeats figure is less meaningful")
        if key != "posttrain":
            same = all(a["rewards"] == b["rewards"] for a, b in zip(runs["posttrain"], side))
            print(f"per-step rewards of {key} and posttrain: "
                  f"{'identical in every run' if same else 'differ (expected where the precision differs)'}")
    print("\nstep: from one optimizer step's start to the next one's (generation, rewards, forward, backward, "
          "optimizer, logging); each run's first step is left out. best of repeats: for each step, its fastest "
          "time over the runs of that side (every run does the same work at step j), then the median over the "
          "steps; this is what the target reads. all runs: the plain median over every timed step. TRL / this: "
          "TRL's step / this row's, best of repeats (above 1.0: faster than TRL). generate + score: TRL's "
          "_generate_and_score_completions (sampling, rewards, advantages); rest of step: the step less that "
          "(log-prob forward, backward, optimizer, logging); both best of repeats. others' CPU: the largest share "
          "of the machine's CPU other processes used during one of that side's runs. mean reward: the weighted "
          "sum TRL logs, over all steps. max weight change: of any weight over a run (the smallest over the runs).")
    print_noise_and_problems(runs, problems)
    ratio = results["trl"] / results["posttrain"]
    ok = ratio >= TARGET and not problems
    print(f"\ntarget: posttrain {TARGET:.1f}x TRL's defaults (TRL step / posttrain step >= {TARGET:.1f}): {ratio:.2f} "
          f"({results['trl'] * 1000:.0f} ms / {results['posttrain'] * 1000:.0f} ms) {'PASS' if ok else 'FAIL'}")
    print(f"work dir: {work}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
