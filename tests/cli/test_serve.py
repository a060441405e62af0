"""`posttrain serve` (posttrain/cli/serve.py): options reach the server; a missing model exits 2 before listening."""

from __future__ import annotations

from typer.testing import CliRunner

from posttrain.cli import app

runner = CliRunner()


def test_the_options_reach_the_server(tiny_model, monkeypatch):
    served = {}
    monkeypatch.setattr("posttrain.serving.server.serve", lambda engine, name, **options: served.update(name=name, **options))
    result = runner.invoke(app, ["serve", "--model", str(tiny_model), "--port", "8123", "--max-tokens-limit", "64",
                                 "--max-request-bytes", "5000"])
    assert result.exit_code == 0, result.output
    assert served == {"name": str(tiny_model), "host": "127.0.0.1", "port": 8123, "max_tokens_limit": 64,
                      "max_request_bytes": 5000}
    assert f"serving {tiny_model} at http://127.0.0.1:8123/v1" in " ".join(result.stderr.split())
    result = runner.invoke(app, ["serve", "--model", str(tiny_model), "--served-model-name", "tiny", "--host",
                                 "0.0.0.0"])
    assert served["name"] == "tiny" and served["host"] == "0.0.0.0" and "no authentication" in result.stderr


def test_a_missing_model_exits_2(tmp_path, monkeypatch):
    monkeypatch.setattr("posttrain.serving.server.serve", lambda *a, **k: (_ for _ in ()).throw(AssertionError("served")))
    result = runner.invoke(app, ["serve", "--model", str(tmp_path / "none")])
    assert result.exit_code == 2 and "cannot load" in result.stderr
