"""SFT throughput: posttrain's SFT stage against plain `trl.SFTTrainer` at its defaults, in one run.

Why it exists: posttrain's SFT stage claims to be faster than TRL's defaults on
the same data (exact packing instead of padding, no gradient checkpointing)
without training a worse model. This script checks that claim on one machine
in one go: the same seeded mixed-length chats (10-200 tokens each), the same
~2 M-parameter model (`posttrain.models.tiny`, size "small") as the starting
point of both runs, one epoch each, the same learning rate, schedule and seed.
It reports real (non-padding) tokens trained per second of training, the
ratio, and both final models' mean token loss on the same held-out chats,
computed here with plain unpacked forward passes. Target: posttrain >= 3x
TRL's tokens/s with held-out loss within 1 %.

    .venv/bin/python bench/sft_throughput.py             # full size, 2,000 chats
    .venv/bin/python bench/sft_throughput.py --quick     # smoke test, 300 chats
    .venv/bin/python bench/sft_throughput.py --dtype fp32  # posttrain without the CPU's bf16 autocast
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402
from machine import cpu_seconds  # noqa: E402  (bench/ is on sys.path when a script runs)

SEED = 42
# Shared by every run. TRL's default (2e-5) barely moves a randomly initialised model in one epoch; both get 1e-3.
LEARNING_RATE = 1e-3
# posttrain's packing geometry, chosen so a step holds about as many real tokens as TRL's default step (8 padded
# chats: ~855 real tokens, 250 steps per epoch of 2,000 chats). Chats are at most 200 tokens, so 216-token rows
# never truncate; best-fit-decreasing packing fills them ~98 %, so 4 rows hold ~845 real tokens (~7.9 chats) and
# the epoch takes ~253 steps. Matching the step matters: on a harder version of this data, 4 x 256 (~9.5 chats,
# 210 steps) ended the epoch ~7 % higher in held-out loss, for posttrain and TRL's own packing alike (fewer
# optimizer steps). Short rows also keep the 4-D mask's dense attention (rows x length^2) small.
PACK_LENGTH, PACK_BATCH = 216, 4
HELD_OUT = 200
TARGET_SPEEDUP, TARGET_LOSS_GAP = 3.0, 0.01

# 1,000 made-up two-syllable words; the BPE tokenizer trained on the chats makes each one token (~2,450 tokens
# in all, so the "small" model has ~2.0 M parameters). Few enough words that one epoch gets near the loss
# floor of the data: mid-learning-curve, a 2 % loss gap between two runs is noise, not signal.
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
_rng = random.Random(0)
WORDS = sorted({_rng.choice(_SYLLABLES) + _rng.choice(_SYLLABLES) for _ in range(4000)})[:1000]


def make_chats(n: int, seed: int) -> list[dict]:
    """Chats of ~10-200 tokens with structure a small model can learn in one epoch, so the loss falls.

    The question is a chain of words where each word is usually (75 %) a fixed successor of the previous one;
    the answer is the question backwards, each word swapped for a fixed partner word.
    """
    rng = random.Random(seed)
    successor = {w: WORDS[(i * 37 + 11) % len(WORDS)] for i, w in enumerate(WORDS)}
    partner = {w: WORDS[(i * 7 + 3) % len(WORDS)] for i, w in enumerate(WORDS)}
    chats = []
    for _ in range(n):
        k = rng.randint(1, 94)  # ~11 template tokens + k question words + k answer words + "." = 13-200 tokens
        words = [rng.choice(WORDS)]
        while len(words) < k:
            words.append(successor[words[-1]] if rng.random() < 0.75 else rng.choice(WORDS))
        answer = " ".join(partner[w] for w in reversed(words)) + "."
        chats.append({"messages": [{"role": "user", "content": " ".join(words)},
                                   {"role": "assistant", "content": answer}]})
    return chats


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def heldout_loss(model_dir, tokenizer, chats: list[dict]) -> float:
    """Mean next-token loss over every token of each held-out chat, one unpacked chat per forward pass, fp32."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for chat in chats:
            ids = torch.tensor([tokenizer.apply_chat_template(chat["messages"], tokenize=True, return_dict=True)["input_ids"]])
            logits = model(input_ids=ids).logits[0, :-1].float()
            total += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
            count += ids.shape[1] - 1
    return total / count


class StepTimer(TrainerCallback):
    """Times each optimizer step (the median leaves other processes' bursts out) and the CPU others took."""

    def __init__(self):
        self.steps: list[float] = []

    def on_train_begin(self, *args, **kwargs):
        self.began_train = cpu_seconds()

    def on_step_begin(self, *args, **kwargs):
        self.began = time.perf_counter()

    def on_step_end(self, *args, **kwargs):
        self.steps.append(time.perf_counter() - self.began)

    def on_train_end(self, *args, **kwargs):
        (w0, m0, o0), (w1, m1, o1) = self.began_train, cpu_seconds()
        self.others = max(0.0, ((m1 - m0) - (o1 - o0)) / ((w1 - w0) * os.cpu_count()))

    def summary(self) -> dict:
        return {"median_step_s": sorted(self.steps)[len(self.steps) // 2], "others": self.others}


def run_posttrain(model_dir: Path, train_file: Path, out: Path, dtype: str = "auto", **extra) -> dict:
    from posttrain import pipeline
    from posttrain.stages import sft

    config = {
        "name": "bench-posttrain", "model": str(model_dir), "output_dir": str(out), "seed": SEED, "dtype": dtype,
        "stages": [{"name": "sft", "type": "sft", "data": {"path": str(train_file), "format": "openai"},
                    "trainer": {"num_train_epochs": 1, "learning_rate": LEARNING_RATE,
                                "assistant_only_loss": False,  # train on every token, as TRL does by default
                                "max_length": PACK_LENGTH, "per_device_train_batch_size": PACK_BATCH, **extra}}],
    }
    timer, original, seen = StepTimer(), sft.ExactSFTTrainer, {}

    class Timed(original):  # the stage's own trainer, plus the step timer and what it chose
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(timer)
            seen.update(bf16=self.args.bf16, attention=self.model.config._attn_implementation)

        def _full_logits_apply(self, inputs, return_outputs):
            seen["full_logits"] = super()._full_logits_apply(inputs, return_outputs)
            return seen["full_logits"]

    sft.ExactSFTTrainer = Timed
    try:
        start = time.perf_counter()
        run_dir = pipeline.run(config, force=True)
        wall = time.perf_counter() - start
    finally:
        sft.ExactSFTTrainer = original
    metrics = json.loads((run_dir / "sft" / "metrics.json").read_text())
    log = [json.loads(line) for line in (run_dir / "sft" / "trainer_log.jsonl").read_text().splitlines()]
    losses = [entry for entry in log if "loss" in entry]
    return {"train_s": metrics["train_runtime"], "wall_s": wall, "steps": log[-1]["current_steps"],
            "last_loss": losses[-1]["loss"], "logged_tokens": losses[-1].get("num_tokens"),
            "model": run_dir / "sft" / "model", "precision": "bf16 autocast" if seen["bf16"] else "fp32",
            "attention": seen["attention"],
            "head": "own logits" if seen["full_logits"] else "TRL fused head", **timer.summary()}


def run_trl(model_dir: Path, train_file: Path, out: Path, **extra) -> dict:
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    timer = StepTimer()
    start = time.perf_counter()
    dataset = load_dataset("json", data_files=str(train_file), split="train")
    # use_cpu: without it TRL's default bf16=True refuses to start on a machine with no GPU
    args = SFTConfig(output_dir=str(out), num_train_epochs=1, report_to="none", learning_rate=LEARNING_RATE,
                     seed=SEED, use_cpu=not torch.cuda.is_available(), **extra)
    trainer = SFTTrainer(model=str(model_dir), args=args, train_dataset=dataset,  # loads the model, tokenizes
                         callbacks=[timer])
    result = trainer.train()
    trainer.save_model(str(out / "model"))
    wall = time.perf_counter() - start
    losses = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {"train_s": result.metrics["train_runtime"], "wall_s": wall, "steps": trainer.state.global_step,
            "last_loss": losses[-1]["loss"], "logged_tokens": losses[-1].get("num_tokens"), "model": out / "model",
            "bf16": args.bf16, "grad_ckpt": args.gradient_checkpointing, "batch": args.per_device_train_batch_size,
            **timer.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="training chats (default 2000)")
    parser.add_argument("--workdir", type=Path, help="where data, model and runs go (default: a new temp dir)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="300 chats: a smoke test")
    parser.add_argument("--no-variant", action="store_true", help="skip the TRL packing=True context run")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                        help="posttrain's pipeline dtype (default auto: bf16 autocast where the CPU has bf16)")
    opts = parser.parse_args()
    records = 300 if opts.quick else opts.records
    torch.set_num_threads(opts.threads)
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="sft-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    import trl

    from posttrain.models.tiny import init_model

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    chats = make_chats(records + HELD_OUT, seed=SEED)
    train_file = write_jsonl(work / "train.jsonl", chats[:records])
    held_out = chats[records:]
    model_dir = init_model(work / "model", [train_file], size="small", seed=0)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    lengths = [len(tokenizer.apply_chat_template(c["messages"], tokenize=True, return_dict=True)["input_ids"])
               for c in chats[:records]]
    real_tokens = sum(lengths)  # every run trains on exactly these tokens, once
    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(model_dir)).parameters())

    runs = {"posttrain": run_posttrain(model_dir, train_file, work / "posttrain", dtype=opts.dtype),
            "trl": run_trl(model_dir, train_file, work / "trl")}
    if not opts.no_variant:  # context only: padding-free, so packed chats attend to each other on CPU (inexact)
        runs["trl_pack"] = run_trl(model_dir, train_file, work / "trl-packing", packing=True,
                                   max_length=PACK_LENGTH, per_device_train_batch_size=PACK_BATCH)
    base_loss = heldout_loss(model_dir, tokenizer, held_out)
    for run in runs.values():
        run["tok_s"] = real_tokens / run["train_s"]
        run["steady_tok_s"] = real_tokens / (run["median_step_s"] * run["steps"])
        run["heldout"] = heldout_loss(run["model"], tokenizer, held_out)

    trl_run, pt = runs["trl"], runs["posttrain"]
    labels = {"posttrain": f"posttrain sft (exact packing {PACK_BATCH}x{PACK_LENGTH}, {pt['precision']}, "
                           f"attention {pt['attention']}, {pt['head']}, grad ckpt=False)",
              "trl": f"TRL SFTTrainer defaults ({trl_run['batch']} rows padded, bf16={trl_run['bf16']}, "
                     f"grad ckpt={trl_run['grad_ckpt']})",
              "trl_pack": f"[context] TRL packing=True {PACK_BATCH}x{PACK_LENGTH} (padding-free, inexact)"}
    print(f"\n## SFT throughput: {records} chats, {real_tokens} tokens "
          f"(per chat min {min(lengths)} / mean {real_tokens / records:.0f} / max {max(lengths)}), "
          f"{HELD_OUT} held-out chats")
    from posttrain.machine import cpu_bf16_native

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores "
          f"({'with' if cpu_bf16_native() else 'without'} bf16 arithmetic), torch threads {torch.get_num_threads()}; "
          f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"trl {trl.__version__}, datasets {datasets.__version__}; model {n_params / 1e6:.2f} M params")
    print(f"shared: same model dir/weights, data, 1 epoch, lr {LEARNING_RATE:g}, linear schedule, no warmup, "
          f"AdamW, seed {SEED}, loss on every token. differs: as in each row's name.")
    print(f"held-out loss of the untrained model: {base_loss:.4f}\n")
    print("| run | steps | chats/step | train s | wall s | real tokens/s | vs TRL | median step ms | "
          "median-step tokens/s | vs TRL | others' CPU | last train loss | held-out loss | vs TRL |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, run in runs.items():
        print(f"| {labels[key]} | {run['steps']} | {records / run['steps']:.1f} | {run['train_s']:.1f} | "
              f"{run['wall_s']:.1f} | {run['tok_s']:.0f} | {run['tok_s'] / trl_run['tok_s']:.2f}x | "
              f"{run['median_step_s'] * 1000:.0f} | {run['steady_tok_s']:.0f} | "
              f"{run['steady_tok_s'] / trl_run['steady_tok_s']:.2f}x | {run['others']:.0%} | {run['last_loss']:.4f} | "
              f"{run['heldout']:.4f} | {run['heldout'] / trl_run['heldout'] - 1:+.2%} |")
    print("\ntrain s: the Trainer's train_runtime (training loop only); wall s: also data loading, tokenization, "
          "model load and saving. real tokens/s: the tokens above / train s. median-step tokens/s: the same tokens / "
          "(median optimizer step x steps), less sensitive to other processes. others' CPU: the share of the "
          "machine's CPU other processes used during training. held-out loss: mean loss over every token of the "
          "held-out chats, one chat per forward pass, fp32, the same way for each final model.")
    print(f"real tokens counted by the trainers up to their last logging step: "
          f"{ {key: run['logged_tokens'] for key, run in runs.items()} }")
    speedup, gap = pt["tok_s"] / trl_run["tok_s"], pt["heldout"] / trl_run["heldout"] - 1
    ok = speedup >= TARGET_SPEEDUP and abs(gap) <= TARGET_LOSS_GAP
    busy = max(run["others"] for run in runs.values())
    if busy > 0.05:
        print(f"\nnote: other processes used up to {busy:.0%} of the machine's CPU during training; the median-step "
              f"figures are the more reliable, or rerun on a quiet machine")
    print(f"\n{'PASS' if ok else 'FAIL'}: posttrain {speedup:.2f}x TRL's tokens/s (target >= {TARGET_SPEEDUP}x), "
          f"held-out loss {gap:+.2%} (target within {TARGET_LOSS_GAP:.0%}); by median steps: "
          f"{pt['steady_tok_s'] / trl_run['steady_tok_s']:.2f}x")
    print(f"work dir: {work}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
