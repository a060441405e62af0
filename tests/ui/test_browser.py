"""posttrain ui's pages in a real headless Chromium (the operating system's, driven by Playwright) against a live
server on 127.0.0.1: the run list, a curve growing while a pipeline trains, the compare view, launching the
quickstart from the page to done, stopping it resumable and resuming it, and the token.

`.ci/run` installs Chromium when it is missing; these tests skip only where none can be found."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from posttrain.runs.manifest import stage_states
from posttrain.ui.app import create_app
from tests.conftest import one_recipe_at_a_time

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "browser-test-token"
CHROMIUM = os.environ.get("POSTTRAIN_CHROMIUM") or next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium; "
                                                         ".ci/run does) and POSTTRAIN_CHROMIUM is unset")
# the quickstart made small enough for a test: each stage logs every step, GRPO keeps a checkpoint every 2
SMALL = ["stages.sft1.trainer.max_steps=6", "stages.sft1.trainer.logging_steps=1",
         "stages.sft2.trainer.max_steps=6", "stages.sft2.trainer.logging_steps=1", "stages.sft2.trainer.eval_steps=3",
         "stages.grpo.trainer.save_steps=2", "stages.eval.limit=4"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class Server:
    """create_app under uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, roots, view_needs_token=False):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        app = create_app(roots, token=TOKEN, view_needs_token=view_needs_token, recipes_dir=ROOT / "recipes",
                         cwd=ROOT)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve():
    servers = []

    def start(roots, **kwargs):
        servers.append(Server(roots, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()
    assert not page.errors, page.errors


def fake_run(folder: Path, name: str, seed: int, losses) -> Path:
    """A finished one-stage run as the pipeline leaves it: manifest, trainer log, resolved config, eval figures."""
    (folder / "sft").mkdir(parents=True)
    (folder / "eval").mkdir()
    (folder / "manifest.json").write_text(json.dumps({"name": name, "stage_order": ["sft", "eval"], "stages": {
        "sft": {"type": "sft", "status": "done", "seconds": 3.0, "metrics": {"train_loss": losses[-1]}},
        "eval": {"type": "eval", "status": "done", "seconds": 1.0}}}))
    with open(folder / "sft" / "trainer_log.jsonl", "w") as f:
        for step, loss in enumerate(losses, 1):
            f.write(json.dumps({"current_steps": step, "total_steps": len(losses), "loss": loss, "lr": 1e-3}) + "\n")
    for stage in ("sft", "eval"):
        (folder / stage / "config.yaml").write_text(f"seed: {seed}\nstage:\n  name: {stage}\n")
    (folder / "eval" / "metrics.json").write_text(json.dumps({
        "metric_names": ["exact_match"], "figures": {"sft": {"exact_match": 0.25 * seed}},
        "intervals": {"sft": {"exact_match": [0.1, 0.4]}}, "comparisons": []}))
    (folder / "eval" / "sft").mkdir()
    (folder / "eval" / "sft" / "predictions.jsonl").write_text(json.dumps(
        {"prompt": "2+2?", "reference": "4", "output": MARKUP}) + "\n")
    return folder


MARKUP = '<img src=x onerror="window.pwned = 1">four'


def wait_until(predicate, timeout=120, what="the condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {timeout} s")


def points(page, chart: str) -> dict:
    """Each dataset's point count on the chart drawn for `chart` (a stage, or compare:<stage>)."""
    return page.evaluate("""key => {
        const canvas = document.querySelector(`[data-chart="${key}"] canvas`);
        if (!canvas) return {};
        const chart = Chart.getChart(canvas);
        return Object.fromEntries(chart.data.datasets.map(d => [d.label, d.data.length]));
    }""", chart)


def test_the_run_list_shows_a_run(tmp_path, serve, page):
    fake_run(tmp_path / "runs" / "first", "first", 1, [3.0, 2.0, 1.5])
    page.goto(serve([tmp_path / "runs"]).url)
    page.wait_for_selector("tr[data-stage=sft]")
    assert page.text_content("h2 a") == "first"
    assert page.text_content("tr[data-stage=sft] .state") == "done"
    assert "train loss: 1.500" in page.text_content("tr[data-stage=sft]")
    assert page.text_content("tr[data-stage=eval] .state") == "done"


def test_a_run_page_shows_its_tables_and_model_outputs_as_text(tmp_path, serve, page):
    fake_run(tmp_path / "runs" / "first", "first", 1, [3.0, 2.0, 1.5])
    page.goto(serve([tmp_path / "runs"]).url + "?run=0/first")
    page.wait_for_selector("section[data-stage=eval] table.side")
    assert page.text_content("table.side td:nth-child(2) .clip") == MARKUP  # shown, not run
    assert page.evaluate("window.pwned") is None and not page.query_selector("table.side img")
    assert "[0.1000, 0.4000]" in page.text_content("section[data-stage=eval] table.eval")
    assert "seed: 1" in page.text_content("section[data-stage=sft] details.config pre")
    wait_until(lambda: sum(points(page, "sft").values()) == 6, 20, "the sft stage's curves")


def test_the_compare_view_overlays_two_runs(tmp_path, serve, page):
    fake_run(tmp_path / "runs" / "seed1", "quickstart", 1, [3.0, 2.0, 1.5, 1.2])
    fake_run(tmp_path / "runs" / "seed2", "quickstart", 2, [3.1, 2.4, 1.9])
    page.goto(serve([tmp_path / "runs"]).url)
    page.wait_for_selector("input.pick[data-run='0/seed2']")
    page.check("input.pick[data-run='0/seed1']")
    page.check("input.pick[data-run='0/seed2']")
    page.click("#compare")
    page.wait_for_selector("[data-chart='compare:sft'] canvas")
    wait_until(lambda: len(points(page, "compare:sft")) == 4, 20, "both runs' curves")
    assert points(page, "compare:sft") == {"quickstart (seed1): train loss": 4, "quickstart (seed1): learning rate": 4,
                                           "quickstart (seed2): train loss": 3, "quickstart (seed2): learning rate": 3}
    figures = page.text_content("table.metrics")
    assert "quickstart (seed1)" in figures and "0.2500" in figures and "0.5000" in figures
    diff = page.text_content("section.diff[data-stage=sft] pre")
    assert "-seed: 1" in diff and "+seed: 2" in diff


def test_a_request_without_the_token_is_refused(tmp_path, serve, page):
    fake_run(tmp_path / "runs" / "first", "first", 1, [3.0, 2.0])
    remote = serve([tmp_path / "runs"], view_needs_token=True)  # as with --host 0.0.0.0: viewing needs it too
    response = page.goto(remote.url)
    assert response.status == 401 and "needs the token" in page.text_content("body")
    page.goto(remote.url + f"?token={TOKEN}")  # the URL posttrain ui prints; the cookie carries it on
    page.wait_for_selector("tr[data-stage=sft]")

    local = serve([tmp_path / "runs"])  # on loopback viewing is open, but launching needs the token
    page.context.clear_cookies()  # a cookie names a host, not a port: the other server's would be sent
    page.goto(local.url)
    page.wait_for_selector("#recipe-list option", state="attached")
    page.fill("#overrides", f"output_dir={tmp_path / 'runs' / 'quick'}")
    page.click("#launch")
    page.wait_for_selector("#token-box:not([hidden])")
    assert "needs the token" in page.text_content("#message")
    assert not (tmp_path / "runs" / ".launches").exists()


def _launch(page, server, tiny_model, run_dir, *overrides):
    page.goto(server.url)
    page.wait_for_selector("#recipe-list option", state="attached")
    page.select_option("#recipe-list", "quickstart.yaml")
    page.fill("#overrides", "\n".join([f"model={tiny_model}", f"output_dir={run_dir}", *SMALL, *overrides]))
    page.click("#launch")  # opened without the printed URL: the page asks for the token, and the user types it
    page.fill("#token", TOKEN)
    page.click("#token-save")
    page.click("#launch")
    page.wait_for_selector("details.launch")


def _states(run_dir) -> list[str]:
    try:
        return [row["status"] for row in stage_states(run_dir)]
    except Exception:  # not written yet, or mid-write
        return []


@pytest.fixture
def alone():
    """A launched pipeline's torch takes every core: one at a time with the suite's recipes (conftest)."""
    with one_recipe_at_a_time():
        yield


def test_launching_the_quickstart_runs_it_to_done_and_its_curves_grow_live(tmp_path, serve, page, tiny_model, alone):
    runs = tmp_path / "runs"
    runs.mkdir()
    server = serve([runs])
    _launch(page, server, tiny_model, runs / "quick", "stages.grpo.trainer.max_steps=30")
    page.wait_for_selector("h2 a", timeout=60_000)  # the run shows up in the list by itself
    page.click("h2 a")
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads: the curves must grow without one
    page.wait_for_selector("[data-chart=grpo] canvas", timeout=90_000)
    seen = []
    wait_until(lambda: seen.append(sum(points(page, "grpo").values())) or _states(runs / "quick")[2:3] == ["done"],
               120, "the GRPO stage to finish")
    assert page.evaluate("window.loadedOnce") is True
    growing = [n for n in seen if 0 < n]
    assert len(set(growing)) >= 3, f"the GRPO curve did not gain points while it trained: {seen}"
    wait_until(lambda: _states(runs / "quick") == ["done"] * 4, 120, "the pipeline to finish")
    page.wait_for_selector("section[data-stage=eval] table.eval", timeout=20_000)
    assert page.text_content("tr[data-stage=eval] .state") == "done"
    assert "grpo" in page.text_content("section[data-stage=eval] table.eval")
    assert not page.query_selector("[data-chart=eval]")  # an eval stage logs no steps: no empty chart for it
    page.goto(server.url)
    page.wait_for_selector("details.launch[data-state=done]", timeout=20_000)


def test_stopping_leaves_the_run_resumable_and_resume_finishes_it(tmp_path, serve, page, tiny_model, alone):
    runs = tmp_path / "runs"
    runs.mkdir()
    server = serve([runs])
    run_dir = runs / "quick"
    _launch(page, server, tiny_model, run_dir, "stages.grpo.trainer.max_steps=30")
    log = run_dir / "grpo" / "trainer_log.jsonl"
    wait_until(lambda: (run_dir / "grpo" / "checkpoints" / "checkpoint-4").is_dir(), 150, "GRPO's fourth step")
    page.goto(server.url + "?run=0/quick")
    page.wait_for_selector("#stop:not([disabled])")
    page.click("#stop")
    wait_until(lambda: _states(run_dir)[2:3] == ["interrupted"], 30, "the stage to stop")
    steps = [json.loads(line)["current_steps"] for line in log.read_text().splitlines()]
    assert steps[-1] < 30, "the stop came after the stage had finished"
    page.wait_for_selector("#resume:not([disabled])", timeout=10_000)
    page.goto(server.url)
    page.wait_for_selector("details.launch[data-state=stopped]", timeout=20_000)

    page.goto(server.url + "?run=0/quick")
    page.wait_for_selector("#resume:not([disabled])")
    page.click("#resume")
    wait_until(lambda: _states(run_dir) == ["done"] * 4, 150, "the resumed pipeline to finish")
    def launches():
        return [json.loads(p.read_text()) for p in sorted((runs / ".launches").glob("*.json"))]

    wait_until(lambda: [launch["state"] for launch in launches()] == ["stopped", "done"], 30, "the resume to exit")
    said = (runs / ".launches" / f"{launches()[-1]['id']}.log").read_text()
    assert "sft1: unchanged since its last run, skipped" in said and "grpo: resuming an unfinished run" in said
    steps = [json.loads(line)["current_steps"] for line in log.read_text().splitlines()]
    assert steps == sorted(steps) and sorted(set(steps)) == list(range(1, 31))  # each step once, none again
