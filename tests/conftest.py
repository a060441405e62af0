"""Shared fixtures: a tiny model built once per session from text the tests make; nothing downloads."""

from __future__ import annotations

import contextlib
import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

# xdist runs one worker per core; more torch threads per worker only contend.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu need a CUDA GPU; without one they are skipped, not failed."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


WORDS = ("the patient trial dose study group risk heart blood test result week drug effect sample size "
         "placebo review search query answer think yes no one two three four five six seven eight nine").split()


def make_chats(n: int, seed: int = 0, min_words: int = 2, max_words: int = 30) -> list[dict]:
    """Conversations whose answer is a deterministic function of the question, so loss can fall."""
    rng = random.Random(seed)
    chats = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(min_words, max_words))
        question = " ".join(words)
        answer = " ".join(reversed(words[:4])) + "."
        chats.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return chats


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return path


def wait_for(predicate, process, timeout: float = 120, poll: float = 0.05) -> None:
    """Wait until `predicate()` holds while the subprocess `process` runs (a test's kill point); fail, killing it,
    if it ends first or the time runs out."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            pytest.fail("the run ended before the kill point:\n" + process.stdout.read()[-3000:])
        time.sleep(poll)
    process.kill()
    pytest.fail("kill point not reached in time")


@pytest.fixture(scope="session")
def chat_corpus(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "chats.jsonl", make_chats(300))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, chat_corpus) -> Path:
    """A ~0.1 M-parameter Qwen2 model with a ChatML byte-level BPE tokenizer."""
    from posttrain.models.tiny import init_model

    return init_model(tmp_path_factory.mktemp("models") / "tiny", [chat_corpus], size="tiny", seed=0)


@pytest.fixture(scope="session")
def talkative_model(tmp_path_factory, tiny_model):
    """The tiny model with larger random weights: its greedy answers differ from prompt to prompt (the
    freshly initialised one answers every prompt with the same newlines), so a test comparing outputs can fail."""
    from posttrain.models.tiny import with_spread_weights

    return with_spread_weights(tiny_model, tmp_path_factory.mktemp("talkative") / "model", std=0.2)


@pytest.fixture(scope="module")
def engine(talkative_model):
    """posttrain.serving.inference's engine on the talkative model: what chat and serve generate with."""
    from posttrain.serving.inference import Engine

    engine = Engine.load(str(talkative_model))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def reward_model(tmp_path_factory, tiny_model):
    """The tiny model with a fresh one-output head: untrained, but a reward model in shape."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("rm") / "model"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def run_recipe_as_make_does(tmp_path: Path, corpora: list[str], recipe: str, *overrides: str,
                            threads: int | None = None) -> Path:
    """Build the recipe's model from `corpora` (`init-model --size small`) and run the recipe unchanged, as the
    Makefile's target does, each in a process of its own: pytest's workers run torch on one thread, and the thread
    count changes the figures (`threads`: that many, else torch's default, one per core). The run directory."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    posttrain = [sys.executable, "-c", "from posttrain.cli import main; main()"]
    model, run_dir = tmp_path / "base", tmp_path / "run"
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {})}
    init = ["init-model", model, "--size", "small", *(arg for corpus in corpora for arg in ("--corpus", corpus))]
    with one_recipe_at_a_time():
        for command in (init, ["run", recipe, f"model={model}", f"output_dir={run_dir}", *overrides]):
            done = subprocess.run([*posttrain, *map(str, command)], cwd=root, env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@contextlib.contextmanager
def one_recipe_at_a_time():
    """Hold a lock the other xdist workers share while a recipe runs: each recipe's torch takes every core, and two
    at once on 2 cores ran each ten times slower than alone (threads waiting on threads), most of the suite's time."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "posttrain-recipe-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def figures_machine(threads: int | None = None) -> str:
    """The machine the quoted figures depend on, as the page that quotes them names it: torch's thread count (one per
    core unless `threads`) and the arithmetic the SFT stages autocast in (training/cpu_bf16.py). AMX and AVX512_BF16
    round bf16 differently, and fp32 rounds differently again, so each prints figures of its own."""
    import platform

    from posttrain.machine import cpu_bf16_kind

    kind = cpu_bf16_kind() or "no bf16 arithmetic"
    where = "1 torch thread" if threads == 1 else f"{threads or os.cpu_count()} CPU cores"
    return f"{where} ({platform.machine()}, {kind})"


def skip_unless_quoted_figures_apply(page: str = "README.md", threads: int | None = None) -> None:
    """Skip the rest of a test that compares a run with the figures `page` quotes, unless the page names this kind
    of machine (`figures_machine`) as the one they came from. Called after the test's learning checks passed."""
    text = (Path(__file__).resolve().parent.parent / page).read_text(encoding="utf-8")
    machine = figures_machine(threads)
    if machine not in text:
        pytest.skip(f"the recipe ran, and the test's checks before this one passed; {page}'s figures come from "
                    f"another kind of machine than this one, {machine}, which prints figures of its own "
                    "(docs/reproducibility.md)")


def readme_lines_missing(lines) -> list[str]:
    """The lines the README does not quote (each must appear in it verbatim)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    return [line for line in lines if line not in readme]


def full_recipe_run(what: str):
    """Skip a check that runs a recipe as its make target does (many minutes) unless POSTTRAIN_FULL_RECIPES is set:
    the slower checks of quoted figures that docs/reproducibility.md lists."""
    return pytest.mark.skipif(not os.environ.get("POSTTRAIN_FULL_RECIPES"),
                              reason=f"{what}; POSTTRAIN_FULL_RECIPES=1 runs it")
