"""`posttrain data` commands: exit codes, exact FILE:LINE messages on stderr, nothing half-written."""

import json

import pytest
import typer
from typer.testing import CliRunner

from posttrain.cli.data import data_app
from posttrain.data.formats import FORMATS
from posttrain.data.io import read_rows

app = typer.Typer()
app.add_typer(data_app, name="data")
runner = CliRunner()

GOOD = {"instruction": "What is a p-value?", "input": "", "output": "The chance of data this extreme under H0."}


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(*args):
    return runner.invoke(app, ["data", *map(str, args)])


def test_convert(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", [GOOD])
    result = _run("convert", src, tmp_path / "out.json", "--from", "alpaca", "--to", "sharegpt")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote 1 records to {tmp_path / 'out.json'}\n"
    assert [r for _, r in read_rows(tmp_path / "out.json")] == [{"conversations": [
        {"from": "human", "value": GOOD["instruction"]}, {"from": "gpt", "value": GOOD["output"]}]}]


BAD_INPUT = [
    # (format, bad row on line 2, expected "field: expected")
    ("alpaca", '{"instruction": "q", "output": }', "json: invalid JSON (Expecting value at column 32)"),
    ("alpaca", {"instruction": "q"}, "output: missing; expected a string"),
    ("alpaca", {"instruction": ["q"], "output": "a"}, "instruction: expected a string, got list"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]},
     "conversations[1].from: expected one of human, gpt, observation, function_call, system, user, assistant, tool, "
     "got 'bot'"),
    ("sharegpt", {"conversations": [{"from": "human", "value": ""}, {"from": "gpt", "value": "a"}]},
     "conversations[0].value: empty; expected text"),
    ("openai", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
     "messages[1].content: empty; expected text"),
]


@pytest.mark.parametrize("fmt,bad,message", BAD_INPUT)
def test_convert_bad_input_exits_2_with_file_line_and_no_output(tmp_path, fmt, bad, message):
    good = {"alpaca": GOOD, "sharegpt": {"conversations": [{"from": "human", "value": "q"},
                                                           {"from": "gpt", "value": "a"}]},
            "openai": {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}}[fmt]
    src = _jsonl(tmp_path / "in.jsonl", [good, bad, good])
    out_dir = tmp_path / "out"
    result = _run("convert", src, out_dir / "o.jsonl", "--from", fmt)
    assert result.exit_code == 2
    assert result.stderr == f"{src}:2: {message}\n"
    assert result.stdout == ""
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


@pytest.mark.parametrize("args,message", [
    # every registered format is listed (the registry grows, so the list is read from it)
    (["--from", "alpacca"], f"format: unknown format 'alpacca'; known: {', '.join(FORMATS)}; did you mean 'alpaca'?"),
    (["--columns", "{bad"], "--columns: invalid JSON (Expecting property name enclosed in double quotes); expected "
                            "an object such as '{\"prompt\": \"q\"}'"),
])
def test_convert_bad_options(tmp_path, args, message):
    src = _jsonl(tmp_path / "in.jsonl", [GOOD])
    result = _run("convert", src, tmp_path / "o.jsonl", *args)
    assert (result.exit_code, result.stderr) == (2, message + "\n")
    assert not (tmp_path / "o.jsonl").exists()


def test_convert_missing_input(tmp_path):
    result = _run("convert", tmp_path / "nope.jsonl", tmp_path / "o.jsonl")
    assert (result.exit_code, result.stderr) == (2, f"{tmp_path / 'nope.jsonl'}: no such file\n")


def test_split(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", [{**GOOD, "input": str(i)} for i in range(20)])
    result = _run("split", src, tmp_path / "out", "--ratios", "0.5,0.25,0.25", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout == "train: 10, validation: 5, test: 5\n"
    again = _run("split", src, tmp_path / "again", "--ratios", "0.5,0.25,0.25", "--seed", "3")
    assert again.exit_code == 0
    assert (tmp_path / "out" / "test.jsonl").read_text() == (tmp_path / "again" / "test.jsonl").read_text()


@pytest.mark.parametrize("ratios,message", [
    ("0.5,0.6", "ratios: expected non-negative numbers that sum to 1, got 0.5,0.6 (sum 1.1)"),
    ("a,b", "--ratios: expected comma-separated numbers such as 0.8,0.1,0.1, got 'a,b'"),
])
def test_split_bad_ratios(tmp_path, ratios, message):
    src = _jsonl(tmp_path / "in.jsonl", [GOOD])
    result = _run("split", src, tmp_path / "out", "--ratios", ratios)
    assert (result.exit_code, result.stderr) == (2, message + "\n")
    assert not (tmp_path / "out").exists()


def test_check_exit_codes(tmp_path):
    clean = _jsonl(tmp_path / "clean.jsonl", [GOOD])
    result = _run("check", clean, "--stage", "sft")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("OK")

    dupes = _jsonl(tmp_path / "dupes.jsonl", [GOOD, GOOD])
    result = _run("check", dupes, "--format", "alpaca")
    assert result.exit_code == 0  # duplicates are warnings
    assert f"{dupes}:2: warning: duplicate of line 1" in result.stdout

    train = _jsonl(tmp_path / "train.jsonl", [GOOD, {"instruction": "q"}])
    result = _run("check", train, "--against", clean, "--against", dupes)
    assert result.exit_code == 2
    assert f"{train}:1: error: also in {clean}:1;" in result.stdout
    assert f"{train}:2: error: output: missing; expected a string" in result.stdout
    assert result.stdout.rstrip().endswith("FAILED")


def test_check_user_error_exits_2(tmp_path):
    result = _run("check", _jsonl(tmp_path / "d.jsonl", [GOOD]), "--stage", "ppo")
    assert result.exit_code == 2
    assert result.stderr.startswith("stage: expected one of sft, grpo, ") and result.stderr.endswith(", got 'ppo'\n")


def test_check_with_a_model_reports_token_lengths(tmp_path, tiny_model):
    long = {**GOOD, "output": " ".join(["the patient trial dose"] * 40)}
    path = _jsonl(tmp_path / "d.jsonl", [GOOD, long])
    result = _run("check", path, "--model", tiny_model, "--max-length", "100")
    assert result.exit_code == 0, result.output
    assert f"{path}:2: warning: " in result.stdout and "over max_length 100; it would be cut" in result.stdout
    assert '"over_max_length": 1' in result.stdout


def test_a_sigterm_mid_conversion_leaves_no_temporary_file(tmp_path, monkeypatch):
    import os
    import signal

    from posttrain.data.formats import alpaca

    src = _jsonl(tmp_path / "in.jsonl", [{**GOOD, "instruction": f"q{i}"} for i in range(20)])
    real = alpaca.to_record

    def terminated(row, columns=None, tags=None):
        if row["instruction"] == "q10":
            os.kill(os.getpid(), signal.SIGTERM)  # as timeout(1) or a scheduler would
        return real(row, columns, tags)

    monkeypatch.setattr(alpaca, "to_record", terminated)
    (tmp_path / "out").mkdir()
    before = signal.getsignal(signal.SIGTERM)
    result = _run("convert", src, tmp_path / "out" / "o.jsonl", "--from", "alpaca")
    assert result.exit_code == 130, result.output
    assert list((tmp_path / "out").iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before
