"""posttrain ui's launch, stop and resume endpoints through FastAPI's client: the token on every address, JSON
bodies only, clear refusals; and only the page's own files under /static/. The pages' real launches, stops and
resumes run in tests/ui/test_browser.py."""

import json

import pytest
from fastapi.testclient import TestClient

from posttrain.ui.app import create_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path):
    run = tmp_path / "runs" / "quick"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"name": "quick", "stage_order": ["sft"], "stages": {
        "sft": {"type": "sft", "status": "interrupted"}}}))
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "tiny.yaml").write_text("name: tiny\n")
    app = create_app([tmp_path / "runs"], token=TOKEN, view_needs_token=False, recipes_dir=recipes, cwd=tmp_path)
    return TestClient(app, base_url="http://127.0.0.1:7860")


@pytest.mark.parametrize("path,body", [("/api/launch", {"recipe": "tiny.yaml"}), ("/api/stop", {"id": "0/quick"}),
                                       ("/api/resume", {"id": "0/quick"})])
def test_acting_needs_the_token_even_on_loopback(client, path, body, tmp_path):
    refused = client.post(path, json=body)
    assert refused.status_code == 401 and "needs the token" in refused.json()["error"]
    assert client.post(path, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert not (tmp_path / "runs" / ".launches").exists()


def test_acting_takes_json_only(client):
    form = client.post("/api/stop", content="id=0/quick", headers={**AUTH, "content-type": "text/plain"})
    assert form.status_code == 415


def test_the_page_lists_the_recipes_folder(client):
    assert client.get("/api/launches").json()["recipes"] == ["tiny.yaml"]


@pytest.mark.parametrize("body,expected", [
    ({"recipe": "nope.yaml"}, "recipe: nope.yaml: no such file"),
    ({"recipe": "tiny.yaml", "overrides": ["max_steps"]}, "overrides: expected a list of KEY=VALUE strings"),
    ({"recipe": "tiny.yaml"}, "tiny.yaml: "),  # not a valid pipeline: load_config's own message follows
    ({"recipe": "tiny.yaml", "overrides": ["stages.sft.trainer.hub_token=hf_x"]},
     "stages.sft.trainer.hub_token: a secret; set it in the environment"),
])
def test_a_launch_that_cannot_start_says_why(client, body, expected, tmp_path):
    refused = client.post("/api/launch", json=body, headers=AUTH)
    assert refused.status_code == 400 and expected in refused.json()["detail"]
    assert not list((tmp_path / "runs").glob(".launches/*.json"))


def test_stop_and_resume_say_what_they_cannot_do(client):
    stop = client.post("/api/stop", json={"id": "0/quick"}, headers=AUTH)
    assert stop.status_code == 400 and "nothing is running there" in stop.json()["detail"]
    resume = client.post("/api/resume", json={"id": "0/quick"}, headers=AUTH)
    assert resume.status_code == 400 and "not started from this page" in resume.json()["detail"]
    assert client.post("/api/stop", json={"id": "0/../x"}, headers=AUTH).status_code == 404


@pytest.mark.parametrize("path", ["/static/app.py", "/static/..%2Fapp.py", "/static/%2e%2e/app.py",
                                  "/static/../launches.py", "/static/page.html", "/api/launch/log?launch=../x"])
def test_nothing_but_the_page_s_own_files_is_served(client, path):
    response = client.get(path)
    assert response.status_code == 404, (path, response.text[:200])
