"""Runs the dashboard starts, stops and resumes: each one is what a user would type, `posttrain validate` and then
`posttrain run RECIPE OVERRIDES...`, as a child process whose output goes to a log file the page shows.

The page does no more than the CLI: a stop is the Ctrl-C a terminal sends (SIGINT to the child's process group,
so the pipeline leaves its stage interrupted and resumable), and a resume runs the same command again. Each launch
is kept as <first runs folder>/.launches/<id>.json beside its .log, so a restarted dashboard can still resume it;
the folder's dot keeps it out of the run list.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from posttrain.config.load import load_config
from posttrain.errors import PosttrainError
from posttrain.runs.manifest import stage_states
from posttrain.runs.secrets import is_secret

# Ctrl-C's handler restored first: a dashboard started in the background by a script (`posttrain ui &`) has SIGINT
# ignored, its children would inherit that, and Stop would do nothing
POSTTRAIN = [sys.executable, "-c", "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                                   "from posttrain.cli import main; main()"]
MAX_LOG_READ = 1 << 16
RECIPE_SUFFIXES = (".yaml", ".yml")


def recipe_names(recipes_dir: Path) -> list[str]:
    """The recipes a page offers: every YAML file under the project's recipes folder, relative to it."""
    if not recipes_dir.is_dir():
        return []
    return sorted(p.relative_to(recipes_dir).as_posix() for p in recipes_dir.rglob("*")
                  if p.suffix in RECIPE_SUFFIXES and p.is_file() and not p.name.startswith("."))


class Launches:
    """The launches under one folder: start (validate, then run), stop, resume, and each one's state and log."""

    def __init__(self, folder: Path, recipes_dir: Path, cwd: Path):
        self.folder, self.recipes_dir, self.cwd = folder, recipes_dir, cwd
        self.children: dict[str, subprocess.Popen] = {}
        self.live: dict[str, dict] = {}  # the records _work holds, for stop() to mark
        self.lock = threading.Lock()

    def recipe(self, given: str) -> Path:
        """A name under the recipes folder, else a path (relative to where the dashboard was started)."""
        if given in recipe_names(self.recipes_dir):
            return self.recipes_dir / given
        path = Path(given).expanduser()
        path = path if path.is_absolute() else self.cwd / path
        if not path.is_file():
            raise PosttrainError(f"recipe: {given}: no such file under {self.recipes_dir} or as a path")
        return path

    def start(self, recipe: str, overrides: list[str]) -> dict:
        if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
            raise PosttrainError("overrides: expected a list of KEY=VALUE strings, "
                                 "e.g. stages.sft1.trainer.max_steps=5")
        secret = [o.split("=", 1)[0] for o in overrides if is_secret(o.split("=", 1)[0].split(".")[-1])]
        if secret:  # the launch's record and log keep its command; a secret must not be written there
            raise PosttrainError(f"overrides: {', '.join(secret)}: a secret; set it in the environment posttrain ui "
                                 "runs in (e.g. HF_TOKEN), so no file keeps it")
        path = self.recipe(recipe)
        try:
            run_dir = Path(load_config(path, overrides).output_dir)
        except PosttrainError as e:
            raise PosttrainError(f"{recipe}: {e}") from None
        run_dir = (run_dir if run_dir.is_absolute() else self.cwd / run_dir).resolve()
        if self.running_for(run_dir):
            raise PosttrainError(f"{run_dir}: a run started from this page is still running there; stop it first")
        self.folder.mkdir(parents=True, exist_ok=True)
        launch_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)  # sorts by time, never repeats
        record = {"id": launch_id, "recipe": str(path), "overrides": overrides, "run_dir": str(run_dir),
                  "log": str(self.folder / f"{launch_id}.log"), "state": "validating", "started": _now()}
        self._save(record)
        self.live[launch_id] = record
        threading.Thread(target=self._work, args=(record,), daemon=True).start()
        return record

    def _work(self, record: dict) -> None:
        """validate, then run when it passed; the record follows each step, and the log gets both outputs."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(record["log"], "ab") as log:
            for step in ("validate", "run"):
                log.write(f"$ posttrain {step} {record['recipe']} {' '.join(record['overrides'])}\n".encode())
                log.flush()
                with self.lock:
                    child = subprocess.Popen([*POSTTRAIN, step, record["recipe"], *record["overrides"]],
                                             cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
                    self.children[record["id"]] = child
                    record.update(state="validating" if step == "validate" else "running", pid=child.pid)
                    self._save(record)
                code = child.wait()
                if code != 0 or record.get("stopping"):
                    break
        with self.lock:
            self.children.pop(record["id"], None)
            self.live.pop(record["id"], None)
            stopped = record.pop("stopping", False)
            state = "done" if code == 0 and step == "run" else "stopped" if stopped else \
                "invalid" if step == "validate" else "failed"
            record.update(state=state, returncode=code, finished=_now())
            record.pop("pid", None)
            self._save(record)

    def stop(self, run_dir: Path) -> dict:
        """Ctrl-C for the run in `run_dir`: to the child this page started there, else to the process the
        manifest names as running its stage (one started from a terminal), when that is a posttrain process."""
        with self.lock:
            for record in self.live.values():
                child = self.children.get(record["id"])
                if child is not None and Path(record["run_dir"]) == run_dir and child.poll() is None:
                    record["stopping"] = True
                    self._save(record)
                    os.killpg(child.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
                    return {"stopped": record["id"]}
        for row in stage_states(run_dir):
            if row.get("status") == "running" and _is_posttrain(row.get("pid")):
                os.kill(int(row["pid"]), signal.SIGINT)
                return {"stopped": int(row["pid"])}
        raise PosttrainError(f"{run_dir}: nothing is running there")

    def resume(self, run_dir: Path) -> dict:
        """The last command this page ran for `run_dir`, again: finished stages are skipped, an interrupted one
        goes on from its last checkpoint."""
        record = next((r for r in reversed(self.records()) if Path(r["run_dir"]) == run_dir), None)
        if record is None:
            raise PosttrainError(f"{run_dir}: not started from this page; run its `posttrain run` command again "
                                 "to resume it")
        return self.start(record["recipe"], record["overrides"])

    def running_for(self, run_dir: Path) -> bool:
        return any(Path(r["run_dir"]) == run_dir for r in list(self.live.values()))

    def records(self) -> list[dict]:
        """Every launch kept in the folder, oldest first (ids sort by time)."""
        out = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and "id" in record:
                if record.get("state") in ("validating", "running") and record["id"] not in self.live:
                    record["state"] = "ended"  # started by a dashboard that has since stopped
                out.append(record)
        return out

    def log(self, launch_id: str, offset: int = 0) -> dict:
        """The launch's log text from byte `offset` (at most 64 KB of it), and where to read on from."""
        record = next((r for r in self.records() if r["id"] == launch_id), None)
        if record is None:
            raise KeyError(launch_id)
        with open(record["log"], "rb") as f:
            f.seek(max(offset, 0))
            data = f.read(MAX_LOG_READ)
        return {"text": data.decode("utf-8", errors="replace"), "offset": max(offset, 0) + len(data)}

    def _save(self, record: dict) -> None:
        path = self.folder / f"{record['id']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(tmp, path)


def _is_posttrain(pid) -> bool:
    try:
        return b"posttrain" in Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError, TypeError):
        return False


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
