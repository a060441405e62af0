"""posttrain ui's HTTP side, through FastAPI's client: the run list, a stage's log read on from an offset, only
listed runs served (no path a request names is opened), and the token on a non-loopback address."""

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from posttrain.ui.app import create_app

TOKEN = "s3cret-token"


@pytest.fixture
def roots(tmp_path):
    run = tmp_path / "runs" / "quick"
    (run / "sft").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"name": "quick", "stage_order": ["sft", "eval"], "stages": {
        "sft": {"type": "sft", "status": "done", "metrics": {"train_loss": 1.5}}}}))
    (run / "sft" / "trainer_log.jsonl").write_text(
        json.dumps({"current_steps": 1, "total_steps": 2, "loss": 3.0}) + "\n")
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "manifest.json").write_text(json.dumps({"name": "not served", "stages": {}}))
    return [tmp_path / "runs"]


def _client(roots, view_needs_token=False, host="127.0.0.1:7860"):
    return TestClient(create_app(roots, token=TOKEN, view_needs_token=view_needs_token), base_url=f"http://{host}")


def test_the_run_list_shows_each_run_with_its_stages(roots):
    runs = _client(roots).get("/api/runs").json()["runs"]
    assert [(r["id"], r["name"]) for r in runs] == [("0/quick", "quick")]
    assert [(s["name"], s["status"], s["headline"]) for s in runs[0]["stages"]] == [
        ("sft", "done", {"name": "train loss", "value": 1.5}), ("eval", "pending", None)]


def test_a_stage_log_is_read_on_from_the_offset_it_gave(roots):
    client = _client(roots)
    first = client.get("/api/log", params={"id": "0/quick", "stage": "sft"}).json()
    assert first["rows"] == [{"current_steps": 1, "total_steps": 2, "loss": 3.0}]
    with open(roots[0] / "quick" / "sft" / "trainer_log.jsonl", "a") as f:
        f.write(json.dumps({"current_steps": 2, "total_steps": 2, "loss": 2.0}) + "\n")
    second = client.get("/api/log", params={"id": "0/quick", "stage": "sft", "offset": first["offset"]}).json()
    assert second["rows"] == [{"current_steps": 2, "total_steps": 2, "loss": 2.0}]


@pytest.mark.parametrize("params", [
    {"id": "0/../elsewhere"}, {"id": "0/quick/../../elsewhere"}, {"id": "1/quick"}, {"id": "/etc"},
])
def test_only_listed_runs_are_served(roots, params):
    client = _client(roots)
    assert client.get("/api/run", params=params).status_code == 404
    assert client.get("/api/log", params={**params, "stage": "sft"}).status_code == 404


@pytest.mark.parametrize("stage", ["../../elsewhere", "sft/../..", "nope"])
def test_only_a_run_s_own_stages_are_read(roots, stage):
    response = _client(roots).get("/api/log", params={"id": "0/quick", "stage": stage})
    assert response.status_code == 404


def test_off_loopback_every_request_needs_the_token(roots):
    client = _client(roots, view_needs_token=True)
    for path in ("/", "/api/runs"):
        refused = client.get(path)
        assert refused.status_code == 401 and "token" in refused.json()["error"]
    assert client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/", params={"token": TOKEN}).status_code == 200  # the printed URL; it sets a cookie
    assert client.get("/api/runs").status_code == 200


def test_on_loopback_viewing_needs_no_token_and_the_page_inserts_text_only(roots):
    client = _client(roots)
    page = client.get("/")
    assert page.status_code == 200 and "<title>posttrain runs</title>" in page.text
    script = client.get("/static/dashboard.js").text
    for text in (page.text, script):
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "document.write" not in text
    assert "textContent" in script


@pytest.mark.parametrize("host,code", [("127.0.0.1:7860", 200), ("localhost:7860", 200), ("[::1]:7860", 200),
                                       ("evil.example:7860", 403), ("127.0.0.1.evil.example", 403)])
def test_on_loopback_only_a_loopback_host_name_is_answered(roots, host, code):
    assert _client(roots, host=host).get("/api/runs").status_code == code


def test_the_command_refuses_a_file_and_waits_for_a_folder_not_made_yet(tmp_path, monkeypatch):
    import uvicorn

    from posttrain.cli.commands import app

    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(app, ["ui", str(tmp_path / "file")])
    assert result.exit_code == 2 and "not a folder" in result.output
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(kwargs))
    result = CliRunner().invoke(app, ["ui", str(tmp_path / "runs")])  # before the first run has made it
    assert result.exit_code == 0 and "no such folder yet" in result.output
    assert served == [{"host": "127.0.0.1", "port": 7860, "log_level": "warning"}]
    assert "http://127.0.0.1:7860/?token=" in result.output


def test_the_charts_come_from_the_vendored_library_not_a_cdn(roots):
    client = _client(roots)
    page = client.get("/").text
    assert '<script src="static/chart.min.js"></script>' in page and "https://" not in page
    library = client.get("/static/chart.min.js")
    assert library.status_code == 200 and library.headers["content-type"].startswith("text/javascript")
    assert library.text.startswith("/*!\n * Chart.js v3.9.1")


def test_a_broken_manifest_is_named_and_does_not_hide_the_other_runs(roots):
    (roots[0] / "broken").mkdir()
    (roots[0] / "broken" / "manifest.json").write_text("{not json")
    (roots[0] / "odd").mkdir()
    (roots[0] / "odd" / "manifest.json").write_text("[1, 2]")
    runs = {r["id"]: r for r in _client(roots).get("/api/runs").json()["runs"]}
    assert runs["0/quick"]["stages"] and "error" not in runs["0/quick"]
    assert "broken/manifest.json: not valid JSON" in runs["0/broken"]["error"]
    assert runs["0/odd"]["error"].endswith("odd/manifest.json: not a manifest posttrain wrote")
