"""`posttrain report RUN_DIR` (posttrain/cli/report.py): the report rebuilt from a run directory, or exit 2."""

from __future__ import annotations

from typer.testing import CliRunner

from posttrain.cli import app
from tests.evaluation.test_report import make_run

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["report", *[str(a) for a in args]])


def test_report_writes_the_run_report(tmp_path):
    run = make_run(tmp_path)
    result = _invoke(run)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "report.html" in result.stdout
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "Evaluation: ev_early<" in page and "Evaluation: ev<" in page and "<h3>grpo " in page


def test_report_of_one_eval_stage_to_a_chosen_file(tmp_path):
    run = make_run(tmp_path)
    result = _invoke(run, "--stage", "ev_early", "--examples", 2, "--out", tmp_path / "early.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "early.html").read_text(encoding="utf-8")
    assert page.count("<article class=example>") == 2 and "Evaluation: ev<" not in page
    assert not (run / "report.html").exists()


def test_not_a_run_directory_exits_2_with_a_message(tmp_path):
    result = _invoke(tmp_path)
    assert result.exit_code == 2
    assert "not a posttrain run directory" in result.output and str(tmp_path) in "".join(result.output.split())
    assert not (tmp_path / "report.html").exists()
    assert _invoke(tmp_path / "missing").exit_code == 2
    result = _invoke(make_run(tmp_path), "--stage", "nope")
    assert result.exit_code == 2 and "no eval stage 'nope'" in result.output
