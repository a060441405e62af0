"""`posttrain export` (posttrain/cli/export.py): status on stderr, the directory on stdout; exit 2 for bad input
and 3 for a failed verification, with nothing written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from posttrain.cli import app
from posttrain.export import TOLERANCE
from tests.export.test_export import make_adapter

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["export", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    return make_adapter(tiny_model, tmp_path_factory.mktemp("cli-adapter") / "lora", seed=4)


def test_export_with_verify_prints_the_check_and_the_directory(tiny_model, adapter, tmp_path):
    result = _invoke("--model", tiny_model, "--adapter", adapter, "--out", tmp_path / "out", "--dtype", "bf16",
                     "--verify")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "out")
    assert "verify passed: largest |logit difference|" in result.stderr and "(bf16: 0.25 x" in result.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "README.md").is_file()


def test_bad_input_exits_2_with_nothing_written(tiny_model, tmp_path):
    result = _invoke("--model", tmp_path / "absent", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "no such model directory" in result.stderr
    result = _invoke("--model", tiny_model, "--adapter", tiny_model, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "no adapter_config.json" in result.stderr
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = _invoke("--model", tiny_model, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "pass --force" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_a_failed_verification_exits_3_with_nothing_written(tiny_model, adapter, tmp_path, monkeypatch):
    monkeypatch.setitem(TOLERANCE, "fp32", -1.0)
    result = _invoke("--model", tiny_model, "--adapter", adapter, "--out", tmp_path / "out", "--verify")
    assert result.exit_code == 3, result.output
    assert "verify failed: largest |logit difference|" in result.stderr
    assert list(tmp_path.iterdir()) == []
