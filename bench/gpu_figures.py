"""GPU figures in one run: what posttrain's SFT stage trains per second on a 0.5 B model, its MFU and peak
memory with each GPU option, and rollout tokens/s of vLLM against transformers' generate on the same prompts.

Why it exists: the GPU-only paths (bf16, Liger kernels, gradient checkpointing, flash attention, LoRA and
QLoRA, vLLM rollouts) are options a user turns on for speed or memory, so what each one buys has to be
measured, on the GPU at hand, side by side. Every row comes from this run; an option this machine cannot run
is a row that says why, and a row that fails says how, without stopping the others.

- The model: `init-model --size qwen2.5-0.5b` (Qwen2.5-0.5B's shape, 494 M parameters, random weights, its
  151,936-row embedding), so nothing is downloaded. Random weights train and generate at the speed trained
  ones do: speed depends on the shapes, not the values.
- SFT: `posttrain.pipeline.run` with one sft stage, as a user runs it (exact packing into rows of
  --length tokens, --batch rows a step, logging every step), on seeded chats. tokens/s is real (non-padding)
  tokens trained between the end of step --warmup and the last step, from the stage's trainer_log.jsonl
  (`num_tokens`, `elapsed_s`). MFU = tokens/s x (6 N + 12 L d T) / the GPU's dense bf16 peak, with N the
  parameters (the tied embedding counted once: as the LM head), L layers, d hidden size and T the row
  length (the model FLOPs of PaLM's appendix B; a checkpointed forward is not counted twice). Peak memory is
  torch.cuda.max_memory_allocated over the stage.
- Rollouts: --prompts chat prompts, each sampled --generations times for --new-tokens tokens (end of text
  ignored, so both engines produce the same number of tokens), at temperature 1: transformers' `generate`
  on the whole batch at once, as GRPO's rollouts without vLLM do, against `vllm.LLM.generate`
  (gpu_memory_utilization 0.3, TRL's colocate default). Each engine generates once to warm up first.

    .venv/bin/python bench/gpu_figures.py                    # on a CUDA GPU (a few minutes on an H100-class one)
    .venv/bin/python bench/gpu_figures.py --peak-tflops 312  # a GPU not in PEAK_TFLOPS: its dense bf16 peak
    .venv/bin/python bench/gpu_figures.py --smoke            # anywhere: the tiny model, a few steps (checks this
                                                              # script; its figures mean nothing)

It prints a table and writes figures.json under --out. Exit status 1 when a row that should have run failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")  # figures for one GPU (several would each get a process)

import torch  # noqa: E402

SEED = 42
# dense (not sparse) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets; first match of the name wins
PEAK_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0),
               ("L4", 121.0)]
WORDS = sorted({a + b for a in ("ka", "lo", "mi", "nu", "pe", "ri", "sa", "to", "vu", "ze")
                for b in ("bel", "dor", "fin", "gus", "hap", "jor", "kin", "lem", "mor", "nix")})


def make_chats(n: int, seed: int) -> list[dict]:
    """Seeded chats of 20-400 words; their content does not matter to the speed, only their lengths."""
    rng = random.Random(seed)
    chats = []
    for _ in range(n):
        question = " ".join(rng.choices(WORDS, k=rng.randint(10, 200)))
        answer = " ".join(rng.choices(WORDS, k=rng.randint(10, 200)))
        chats.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return chats


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def peak_tflops(given: float | None, name: str | None) -> float | None:
    """--peak-tflops, else the data-sheet peak of the GPU named `name`, else None (no MFU)."""
    return given or next((peak for key, peak in PEAK_TFLOPS if name and key in name), None)


def flops_per_token(model_dir: Path, length: int) -> tuple[float, int]:
    """PaLM's model FLOPs per trained token (6 N + 12 L d T) and N, from the config alone (the meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    parameters = sum(p.numel() for p in model.parameters())
    return 6 * parameters + 12 * config.num_hidden_layers * config.hidden_size * length, parameters


def sft_variants() -> list[tuple[str, dict, str | None]]:
    """(label, pipeline settings over the default, why it cannot run here or None)."""
    cuda = torch.cuda.is_available()
    ampere = cuda and torch.cuda.get_device_capability() >= (8, 0)
    no_gpu = None if cuda else "needs a CUDA GPU"
    return [
        ("full, sdpa", {}, None),
        ("full, sdpa, Liger kernels", {"trainer": {"use_liger_kernel": True}},
         no_gpu or (None if installed("liger_kernel") else "liger_kernel is not installed")),
        ("full, sdpa, gradient checkpointing", {"trainer": {"gradient_checkpointing": True}}, None),
        ("full, flash_attention_2", {"top": {"attn_implementation": "flash_attention_2"}},
         no_gpu or (None if ampere else "needs compute capability 8.0+")
         or (None if installed("flash_attn") else "flash_attn is not installed")),
        ("LoRA r16, sdpa", {"stage": {"finetuning": "lora", "lora": {"r": 16, "alpha": 32}},
                            "trainer": {"learning_rate": 2e-4}}, None),
        ("QLoRA r16, sdpa", {"stage": {"finetuning": "qlora", "lora": {"r": 16, "alpha": 32}},
                             "trainer": {"learning_rate": 2e-4}},
         no_gpu or (None if installed("bitsandbytes") else "bitsandbytes is not installed")),
    ]


def run_sft(label: str, variant: dict, model_dir: Path, data: Path, work: Path, args) -> dict:
    from rich.console import Console

    from posttrain import pipeline
    from posttrain.training.logs import read_log

    trainer = {"max_length": args.length, "per_device_train_batch_size": args.batch, "max_steps": args.steps,
               "logging_steps": 1, "learning_rate": 1e-4, "save_strategy": "no", "seed": SEED,
               **variant.get("trainer", {})}
    name = "".join(c if c.isalnum() else "-" for c in label.lower())
    config = {"name": "gpu-figures", "model": str(model_dir), "output_dir": str(work / "runs" / name),
              **variant.get("top", {}),
              "stages": [{"name": "sft", "type": "sft", "data": str(data), **variant.get("stage", {}),
                          "trainer": trainer}]}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run_dir = pipeline.run(config, force=True, console=Console(stderr=True, quiet=True))
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    rows = [row for row in read_log(run_dir / "sft" / "trainer_log.jsonl") if "loss" in row]
    start = next(row for row in rows if row["current_steps"] >= args.warmup)
    end = rows[-1]
    seconds = end["elapsed_s"] - start["elapsed_s"]
    tokens = end["num_tokens"] - start["num_tokens"]
    if not (seconds > 0 and tokens > 0 and all(row["loss"] == row["loss"] for row in rows)):
        raise RuntimeError(f"no measurable steps after the warm-up ({len(rows)} logged), or a NaN loss")
    return {"tokens_per_s": tokens / seconds, "steps": end["current_steps"] - start["current_steps"],
            "peak_gib": peak, "first_loss": rows[0]["loss"], "last_loss": end["loss"]}


def rollout_prompts(model_dir: Path, n: int, seed: int) -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rng = random.Random(seed)
    return [tokenizer.apply_chat_template([{"role": "user", "content": " ".join(rng.choices(WORDS, k=40))}],
                                          add_generation_prompt=True, tokenize=True, return_dict=False)
            for _ in range(n)]


def hf_rollouts(model_dir: Path, prompts: list[list[int]], args) -> dict:
    from posttrain.models.loading import load_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(str(model_dir)).to(device).eval()
    pad = model.generation_config.pad_token_id
    batch = [ids for ids in prompts for _ in range(args.generations)]
    width = max(len(ids) for ids in batch)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=device)  # left padding
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device)

    def generate(new_tokens: int) -> float:
        _sync()
        began = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=1.0,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        _sync()
        assert out.shape[1] == width + new_tokens
        return time.perf_counter() - began

    generate(4)
    seconds = generate(args.new_tokens)
    return {"tokens_per_s": len(batch) * args.new_tokens / seconds, "sequences": len(batch), "seconds": seconds}


def vllm_rollouts(model_dir: Path, prompts: list[list[int]], args) -> dict:
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model_dir), dtype="bfloat16", gpu_memory_utilization=0.3, seed=SEED,
              max_model_len=max(len(p) for p in prompts) + args.new_tokens)
    inputs = [{"prompt_token_ids": ids} for ids in prompts]

    def generate(new_tokens: int) -> float:
        params = SamplingParams(n=args.generations, temperature=1.0, max_tokens=new_tokens, ignore_eos=True,
                                detokenize=False, seed=SEED)
        began = time.perf_counter()
        outputs = llm.generate(inputs, params, use_tqdm=False)
        seconds = time.perf_counter() - began
        assert all(len(c.token_ids) == new_tokens for o in outputs for c in o.outputs)
        return seconds

    generate(4)
    seconds = generate(args.new_tokens)
    sequences = len(prompts) * args.generations
    return {"tokens_per_s": sequences * args.new_tokens / seconds, "sequences": sequences, "seconds": seconds}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measured(kind: str, label: str, why_not: str | None, measure) -> dict:
    """One row: its figures, why it did not run, or how it failed (the others still run). The model a row loaded
    is freed when `measure` returns, before the next row starts."""
    row = {"kind": kind, "label": label}
    if why_not:
        return {**row, "status": "not run", "why": why_not}
    print(f"measuring {kind}: {label} ...", file=sys.stderr, flush=True)
    try:
        return {**row, "status": "ok", **measure()}
    except Exception as e:  # noqa: BLE001  a row's failure is a figure too: it is reported, and the run goes on
        traceback.print_exc()
        return {**row, "status": "failed", "why": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    finally:
        _free()


def machine() -> dict:
    import transformers

    found = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
             "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
             "cuda": torch.version.cuda}
    for module in ("trl", "peft", "vllm", "liger_kernel", "flash_attn", "bitsandbytes"):
        try:
            found[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001  absent, or broken on this machine: either way not in use
            found[module] = None
    return found


def table(rows: list[dict], peak: float | None, flops: float) -> str:
    lines = ["| what | option | tokens/s | MFU | peak GiB | loss first → last | note |",
             "|---|---|---:|---:|---:|---|---|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['kind']} | {row['label']} | | | | | {row['status']}: {row['why']} |")
            continue
        mfu = f"{row['tokens_per_s'] * flops / (peak * 1e12):.1%}" if row["kind"] == "sft" and peak else ""
        gib = f"{row['peak_gib']:.1f}" if row.get("peak_gib") is not None else ""
        loss = f"{row['first_loss']:.3f} → {row['last_loss']:.3f}" if "first_loss" in row else ""
        note = (f"{row['steps']} steps after the warm-up" if row["kind"] == "sft"
                else f"{row['sequences']} sequences in {row['seconds']:.2f} s")
        lines.append(f"| {row['kind']} | {row['label']} | {row['tokens_per_s']:,.0f} | {mfu} | {gib} | {loss} | "
                     f"{note} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the tiny model and a few steps, on any machine")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-figures"))
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for MFU")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of tokens/s")
    parser.add_argument("--length", type=int, default=2048, help="packed row length")
    parser.add_argument("--batch", type=int, default=8, help="packed rows a step")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--generations", type=int, default=8, help="completions a prompt (GRPO's group)")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--skip", default="", help="comma-separated kinds to leave out: sft, rollout")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.length, args.batch = 4, 2, 256, 2
        args.prompts, args.generations, args.new_tokens = 2, 2, 8
    skip = {kind.strip() for kind in args.skip.split(",") if kind.strip()}

    from posttrain.models.tiny import init_model

    work = args.out
    chats = make_chats(60 if args.smoke else args.steps * args.batch * args.length // 200 + 200, SEED)
    data = write_jsonl(work / "chats.jsonl", chats)
    size = "tiny" if args.smoke else "qwen2.5-0.5b"
    print(f"building the {size} model ...", file=sys.stderr, flush=True)
    model_dir = init_model(work / f"model-{size}", [data], size=size, seed=0)
    flops, parameters = flops_per_token(model_dir, args.length)
    peak = peak_tflops(args.peak_tflops, torch.cuda.get_device_name() if torch.cuda.is_available() else None)

    rows = []
    if "sft" not in skip:
        rows += [measured("sft", label, why, lambda v=variant, lb=label: run_sft(lb, v, model_dir, data, work, args))
                 for label, variant, why in sft_variants()]
    if "rollout" not in skip:
        prompts = rollout_prompts(model_dir, args.prompts, SEED)
        rows.append(measured("rollout", "transformers generate", None, lambda: hf_rollouts(model_dir, prompts, args)))
        no_vllm = (None if torch.cuda.is_available() else "needs a CUDA GPU") or (
            None if installed("vllm") else "vllm is not installed")
        rows.append(measured("rollout", "vLLM", no_vllm, lambda: vllm_rollouts(model_dir, prompts, args)))

    about = machine()
    print(f"\nmodel: {size}, {parameters / 1e6:.1f} M parameters; SFT rows of {args.length} tokens x {args.batch}, "
          f"{args.steps} steps (the first {args.warmup} left out); rollouts: {args.prompts} prompts x "
          f"{args.generations} completions x {args.new_tokens} tokens")
    print(f"machine: {json.dumps(about)}")
    print(f"MFU against {peak:g} TFLOP/s dense bf16" if peak else "MFU: no peak known for this machine "
          "(--peak-tflops gives one)")
    print(table(rows, peak, flops))
    rollouts = {row["label"]: row for row in rows if row["kind"] == "rollout" and row["status"] == "ok"}
    if len(rollouts) == 2:
        ratio = rollouts["vLLM"]["tokens_per_s"] / rollouts["transformers generate"]["tokens_per_s"]
        print(f"vLLM / transformers generate: {ratio:.1f}x the tokens/s")
    summary = {"machine": about, "model": size, "parameters": parameters, "flops_per_token": flops,
               "peak_tflops": peak, "settings": {k: v for k, v in vars(args).items() if k != "out"},
               "rows": rows}
    (work / "figures.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    print(f"figures: {work / 'figures.json'}")
    return 1 if any(row["status"] == "failed" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
