"""The command line answers at once: `posttrain --help` (and each command's --help) imports none of the heavy
libraries, which only the commands that train, load a model or read data need."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

# (pydantic is not here: typer imports it itself to render a command's options)
HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "numpy", "pyarrow", "yaml")
PROBE = """
import json, sys
sys.argv = ["posttrain", *json.loads(sys.argv[1])]
from posttrain.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in json.loads(sys.argv[2]))))
"""


def _imported(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE.replace("sys.argv[1]", repr(json.dumps(list(args))))
                           .replace("sys.argv[2]", repr(json.dumps(HEAVY)))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [("--help",), ("run", "--help"), ("eval", "--help"), ("serve", "--help"),
                                  ("report", "--help"), ("vllm-serve", "--help"), ("data", "convert", "--help")])
def test_help_imports_no_heavy_library(args):
    assert _imported(*args) == [], f"posttrain {' '.join(args)} imported {_imported(*args)}"


def test_help_answers_at_once():
    """0.3 s is the target on a quiet 2-core machine; a loaded CI machine gets twice that before the test fails."""
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "posttrain.cli", "--help"], capture_output=True, check=True, timeout=60)
        best = min(best, time.perf_counter() - began)
    assert best < 0.6, f"posttrain --help took {best:.2f} s at best"
