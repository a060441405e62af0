"""The `posttrain` command (posttrain/cli/commands.py): init-model, run, train, status; bad input is exit 2 and one message."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from posttrain.cli import app
from tests.conftest import make_chats, write_jsonl

runner = CliRunner()
TINY_TRAINER = {"max_steps": 2, "max_length": 128, "report_to": "none", "logging_steps": 1,
                "per_device_train_batch_size": 4, "save_steps": 2}


def _flat(text: str) -> str:
    """Text without whitespace: off a terminal rich wraps (and folds long paths) at 80 columns; compare
    both sides flattened."""
    return "".join(text.split())


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# ---- init-model ----------------------------------------------------------------------------------------------------

def test_init_model_writes_a_loadable_model(chat_corpus, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "base"
    result = _invoke("init-model", out, "--corpus", chat_corpus, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert _flat(result.stdout) == _flat(f"model written to {out}")
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tokenizer)
    assert 50_000 <= sum(p.numel() for p in model.parameters()) <= 200_000
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == \
        "<|im_start|>user\nhi<|im_end|>\n"


@pytest.mark.parametrize("args,message", [
    (["--corpus", "{tmp}/nope.jsonl"], "{tmp}/nope.jsonl: no such corpus file"),
    (["--corpus", "{corpus}", "--size", "huge"], "size: expected one of tiny, small, qwen2.5-0.5b, got 'huge'"),
])
def test_init_model_bad_input(chat_corpus, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, corpus=chat_corpus) for a in args]
    result = _invoke("init-model", tmp_path / "m", *args)
    assert result.exit_code == 2
    assert _flat(result.stderr) == _flat(message.format(tmp=tmp_path))
    assert "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


# ---- run: bad data -------------------------------------------------------------------------------------------------

def test_run_with_a_malformed_record_exits_2_and_writes_no_model(tiny_model, tmp_path):
    data = tmp_path / "bad.jsonl"
    bad = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}
    data.write_text("\n".join(json.dumps(r) for r in [*make_chats(3), bad]) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({"name": "bad", "model": str(tiny_model), "output_dir": str(run_dir), "stages": [
        {"name": "s1", "type": "sft", "data": {"path": str(data), "format": "openai"}, "trainer": TINY_TRAINER}]}))

    result = _invoke("run", config)
    assert result.exit_code == 2
    assert f"{data}:4: messages[1].content: empty; expected text\n" in result.stderr
    assert "Traceback" not in result.output
    assert not (run_dir / "s1" / "model").exists()
    assert not (run_dir / "s1" / "model.tmp").exists()
    assert not (run_dir / "s1" / "checkpoints").exists()

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["s1"]["status"] == "failed"
    assert manifest["stages"]["s1"]["error"] == f"DataError: {data}:4: messages[1].content: empty; expected text"
    status = _invoke("status", run_dir)
    assert status.exit_code == 0
    assert "failed" in status.stdout
    assert _flat(f"s1: DataError: {data}:4: messages[1].content: empty; expected text") in _flat(status.stderr)


def test_run_with_a_bad_config_exits_2_and_writes_nothing(tiny_model, tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({"name": "x", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
                                      "stages": [{"name": "s1", "type": "sft", "data": "d.jsonl"}]}))
    result = _invoke("run", config, "stages.s1.trainer.max_step=2")
    assert result.exit_code == 2
    assert _flat("unknown key 'max_step' for SFTConfig; did you mean 'max_steps'?") in _flat(result.stderr)
    assert not (tmp_path / "run").exists()


def test_run_with_dotted_overrides(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(8, seed=6))
    run_dir = tmp_path / "run"
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({"name": "o", "model": "not/a/model", "output_dir": str(run_dir), "stages": [
        {"name": "s1", "type": "sft", "data": str(data), "trainer": {**TINY_TRAINER, "max_steps": 500}}]}))
    result = _invoke("run", config, f"model={tiny_model}", "stages.s1.trainer.max_steps=2",
                     "stages.s1.trainer.learning_rate=1e-3")
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (run_dir / "s1" / "trainer_log.jsonl").read_text().splitlines()]
    assert max(entry["current_steps"] for entry in log) == 2
    resolved = yaml.safe_load((run_dir / "s1" / "config.yaml").read_text())
    assert resolved["input_model"] == str(tiny_model)
    assert resolved["stage"]["trainer"]["learning_rate"] == 1e-3
    assert (run_dir / "s1" / "model" / "model.safetensors").exists()


def test_status_of_a_dir_that_is_not_a_run(tmp_path):
    result = _invoke("status", tmp_path)
    assert result.exit_code == 2
    assert _flat(result.stderr) == _flat(f"{tmp_path}: no manifest.json; not a posttrain run directory")
    assert "Traceback" not in result.output


# ---- train: a one-stage file ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """`posttrain train` of a one-stage YAML (no `stages:` key), two steps."""
    root = tmp_path_factory.mktemp("train")
    data = write_jsonl(root / "chats.jsonl", make_chats(16, seed=5))
    config = root / "sft.yaml"
    config.write_text(yaml.safe_dump({"model": str(tiny_model), "output_dir": str(root / "run"), "type": "sft",
                                      "data": {"path": str(data), "format": "openai"}, "trainer": TINY_TRAINER}))
    result = _invoke("train", config)
    return config, root / "run", result


def test_train_one_stage_file(trained):
    config, run_dir, result = trained
    assert result.exit_code == 0, result.output
    assert _flat(f"run directory: {run_dir}") in _flat(result.stderr)
    stage_dir = run_dir / "sft"  # a one-stage file's stage is named after its type
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (stage_dir / "model" / name).exists(), name
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    assert metrics["train_examples"] == 16
    assert 0 < metrics["train_loss"] < 20
    log = [json.loads(line) for line in (stage_dir / "trainer_log.jsonl").read_text().splitlines()]
    assert [entry["current_steps"] for entry in log if "loss" in entry] == [1, 2]
    resolved = yaml.safe_load((stage_dir / "config.yaml").read_text())
    assert resolved["stage"]["name"] == "sft" and resolved["stage"]["trainer"]["max_steps"] == 2


def test_trained_model_loads(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, run_dir, _ = trained
    model = AutoModelForCausalLM.from_pretrained(run_dir / "sft" / "model")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "sft" / "model")
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.chat_template


def test_status_after_a_finished_run(trained):
    _, run_dir, _ = trained
    result = _invoke("status", run_dir)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if " sft " in line)
    assert "done" in row
    assert result.stderr == ""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    entry = manifest["stages"]["sft"]
    assert (manifest["stage_order"], entry["status"], entry["type"]) == (["sft"], "done", "sft")
    assert entry["output"] == str(run_dir / "sft" / "model")


def test_train_again_skips_the_finished_stage(trained):
    config, run_dir, _ = trained
    weights = (run_dir / "sft" / "model" / "model.safetensors").read_bytes()
    result = _invoke("train", config)
    assert result.exit_code == 0, result.output
    assert _flat("sft: unchanged since its last run, skipped") in _flat(result.stderr)
    assert (run_dir / "sft" / "model" / "model.safetensors").read_bytes() == weights


@pytest.mark.parametrize("command", [["data", "check"], ["validate"], ["status"]])
def test_a_path_the_system_refuses_is_exit_2_naming_it(tmp_path, command):
    too_long = str(tmp_path / ("x" * 5000))
    result = CliRunner().invoke(app, [*command, too_long + ".jsonl" if command[0] == "data" else too_long])
    assert result.exit_code == 2, result.output
    assert "File name too long" in result.output and "Traceback" not in result.output
