"""bench/gpu_figures.py: its smoke run on this machine (every row runs, or says why it cannot), and the MFU
arithmetic it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def gpu_figures():
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_figures

        yield gpu_figures
    finally:
        sys.path.remove(str(BENCH))


def test_smoke_run_measures_what_this_machine_can_and_says_why_not_for_the_rest(tmp_path):
    import torch

    done = subprocess.run([sys.executable, str(BENCH / "gpu_figures.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    rows = {(row["kind"], row["label"]): row for row in figures["rows"]}
    assert {kind for kind, _ in rows} == {"sft", "rollout"}
    for key in [("sft", "full, sdpa"), ("sft", "full, sdpa, gradient checkpointing"), ("sft", "LoRA r16, sdpa"),
                ("rollout", "transformers generate")]:
        assert rows[key]["status"] == "ok" and rows[key]["tokens_per_s"] > 0, rows[key]
    if not torch.cuda.is_available():
        for key in [("sft", "full, sdpa, Liger kernels"), ("sft", "QLoRA r16, sdpa"), ("rollout", "vLLM")]:
            assert rows[key] == {"kind": key[0], "label": key[1], "status": "not run", "why": "needs a CUDA GPU"}
    for label, row in rows.items():  # the printed table has a line for each row, whatever happened to it
        assert f"| {label[0]} | {label[1]} |" in done.stdout
    assert figures["rows"][0]["last_loss"] == figures["rows"][0]["last_loss"]  # not NaN


def test_model_flops_per_token_and_peaks(gpu_figures, tiny_model):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_model)
    flops, parameters = gpu_figures.flops_per_token(tiny_model, 128)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert parameters == sum(p.numel() for p in model.parameters())  # the tied embedding once, as the LM head
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert flops == 6 * parameters + 12 * config.num_hidden_layers * config.hidden_size * 128
    assert gpu_figures.peak_tflops(None, "NVIDIA H100 PCIe") == 756.0
    assert gpu_figures.peak_tflops(None, "NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_figures.peak_tflops(None, "NVIDIA L40S") == 362.0
    assert gpu_figures.peak_tflops(None, "NVIDIA L4") == 121.0
    assert gpu_figures.peak_tflops(None, "Tesla T4") is None and gpu_figures.peak_tflops(None, None) is None
    assert gpu_figures.peak_tflops(65.0, "Tesla T4") == 65.0
