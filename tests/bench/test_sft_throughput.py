"""bench/sft_throughput.py: its smoke run trains posttrain's SFT stage and TRL's defaults on the same chats and
prints both rows with what posttrain chose on this machine (precision, attention, loss head). Step times on a shared
CI machine are noise, so the test holds the table and the choices, not the timing verdict."""

from __future__ import annotations

import re

from posttrain.machine import cpu_bf16_native
from tests.bench.conftest import run_bench


def test_the_smoke_run_prints_both_sides_and_the_path_posttrain_took(tmp_path):
    out = run_bench("sft_throughput.py", "--records", "120", "--no-variant", "--threads", "1", "--workdir", tmp_path)
    rows = {row.split("|")[1].strip(): row for row in out.splitlines() if row.startswith("| ") and "---" not in row}
    ours = next(name for name in rows if name.startswith("posttrain sft"))
    # the bench's logits (4 x 216 x ~2,450) are under the size rule, so the stage scores its own logits
    expected = "bf16 autocast, attention sdpa_fp32" if cpu_bf16_native() else "fp32, attention sdpa"
    assert f"{expected}, own logits" in ours, ours
    assert any(name.startswith("TRL SFTTrainer defaults") for name in rows), out
    assert re.search(r"(PASS|FAIL): posttrain \d+\.\d\dx TRL's tokens/s \(target >= 3\.0x\), held-out loss "
                     r"[+-]\d+\.\d\d% \(target within 1%\)", out), out
