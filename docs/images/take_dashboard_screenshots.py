"""Take docs/dashboard.md's screenshots: `posttrain ui DIR` in a child process, and in headless Chromium (Playwright)
the quickstart launched from the page twice, with seeds 42 and 7; the second one is shot while it trains, then its
eval tables, the compare view of the two, and the print layout.

    .venv/bin/python docs/images/take_dashboard_screenshots.py /tmp/uidocs   # about 4 minutes on 2 CPU cores

Run it from the repository root after `make demo` has built models/quickstart-base.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent
PORT = 7869


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / "quick-seed7", ignore_errors=True)  # trained again, to be shot while it trains
    server = subprocess.Popen([sys.executable, "-c", "from posttrain.cli import main; main()", "ui", str(folder),
                               "--port", str(PORT)], stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        while "?token=" not in line:
            line = server.stderr.readline()
        url = re.search(r"(http://\S+)", line).group(1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1150})
            page.goto(url)  # the printed URL: its token goes into a cookie, so the page may launch
            for seed in (42, 7):
                if seed == 7 or not (folder / f"quick-seed{seed}" / "eval" / "metrics.json").exists():
                    launch(page, folder, seed)
                if seed == 42:
                    wait_done(folder / "quick-seed42")
            page.goto(url.split("?")[0] + "?run=0/quick-seed7")
            page.wait_for_selector("tr[data-stage=grpo] .state.running", timeout=300_000)
            time.sleep(4)
            page.screenshot(path=OUT / "dashboard-live-1.png")
            time.sleep(10)  # the same page load, 10 s on: the curves have grown
            page.screenshot(path=OUT / "dashboard-live-2.png")
            wait_done(folder / "quick-seed7")
            page.goto(url.split("?")[0])
            page.wait_for_selector("details.launch")
            page.click("details.launch summary")
            time.sleep(3)
            page.screenshot(path=OUT / "dashboard-runs.png", full_page=True)
            page.goto(url.split("?")[0] + "?run=0/quick-seed7")
            page.wait_for_selector("section[data-stage=eval] table.side")
            time.sleep(3)
            page.screenshot(path=OUT / "dashboard-run.png")
            page.evaluate("document.querySelector('section[data-stage=eval]').scrollIntoView()")
            page.screenshot(path=OUT / "dashboard-eval.png")
            page.emulate_media(media="print")
            page.screenshot(path=OUT / "dashboard-print.png", full_page=True,  # its first 2,400 pixels
                            clip={"x": 0, "y": 0, "width": 1280, "height": 2400})
            page.emulate_media(media="screen")
            page.goto(url.split("?")[0] + "?compare=0/quick-seed42&compare=0/quick-seed7")
            page.wait_for_selector("[data-chart='compare:grpo'] canvas")
            time.sleep(4)
            page.screenshot(path=OUT / "dashboard-compare.png", full_page=True)
            browser.close()
    finally:
        server.terminate()


def launch(page, folder: Path, seed: int) -> None:
    page.wait_for_selector("#recipe-list option", state="attached")
    page.select_option("#recipe-list", "quickstart.yaml")
    page.fill("#overrides", f"seed={seed}\noutput_dir={folder / f'quick-seed{seed}'}")
    page.click("#launch")
    page.wait_for_selector(f"details.launch summary:has-text('quick-seed{seed}')")


def wait_done(run_dir: Path, timeout: float = 600) -> None:
    import json

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
            if len(stages) == 4 and all(s.get("status") == "done" for s in stages.values()):
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(1)
    raise SystemExit(f"{run_dir}: not done in {timeout} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
