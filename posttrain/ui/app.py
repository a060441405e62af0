"""The dashboard's HTTP side: a page, and the JSON it polls.

Only runs found under the given folders are served, looked up by the id the run list gave them, so no path a
request names is ever opened. The server listens on 127.0.0.1 by default; on any other address every request
needs the token printed at start-up (a header, a `token` query parameter, or the cookie the page sets from it).
On loopback a request must name 127.0.0.1 or localhost as its host, so a page of another site whose name
is rebound to 127.0.0.1 cannot read the runs. Starting, stopping and resuming a run (POST, JSON bodies only)
need the token on every address, loopback too. Everything a run wrote reaches the page as JSON and is put in
with textContent, never as HTML.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from posttrain.errors import PosttrainError
from posttrain.runs.details import config_diff, stage_details
from posttrain.runs.manifest import stage_states
from posttrain.runs.watch import find_runs, overview, read_log
from posttrain.ui.launches import Launches, recipe_names

COOKIE = "posttrain_ui_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
PAGE = Path(__file__).with_name("page.html")
STATIC = Path(__file__).with_name("static")
SCRIPTS = {"chart.min.js", "dashboard.js"}  # all /static/ serves; Chart.js 3.9.1 is MIT (static/README.md)


def _hostname(host: str) -> str:
    """The name in a Host header, without its port ("[::1]:7860" -> "::1")."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def run_ids(roots: list[Path]) -> dict[str, Path]:
    """Each run under the roots by its id: the root's index and the run's path under it."""
    ids = {}
    for i, root in enumerate(roots):
        for run in find_runs([root]):
            relative = run.relative_to(root).as_posix() if run != root else "."
            ids[f"{i}/{relative}"] = run
    return ids


def _overview(run_id: str, path: Path) -> dict:
    """The run's overview, or what is wrong with its manifest: one broken run does not hide the others."""
    try:
        return {"id": run_id, **overview(path)}
    except PosttrainError as e:  # its message names the file
        problem = str(e)
    except (KeyError, TypeError, AttributeError):
        problem = f"{path / 'manifest.json'}: not a manifest posttrain wrote"
    return {"id": run_id, "name": path.name, "path": str(path), "stages": [], "error": problem}


def create_app(roots, *, token: str, view_needs_token: bool, recipes_dir="recipes", cwd=None):
    """The app over run folders `roots`; launches offer the YAML files under `recipes_dir` and run in `cwd`
    (default: the current folder), as the same commands typed there would."""
    from fastapi import Body, FastAPI, HTTPException, Query, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    roots = [Path(root) for root in roots]
    cwd = Path(cwd or Path.cwd()).resolve()
    recipes_dir = Path(recipes_dir) if Path(recipes_dir).is_absolute() else cwd / recipes_dir
    launches = Launches(roots[0] / ".launches", recipes_dir, cwd)
    app = FastAPI(title="posttrain ui", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def _token(request: Request, call_next):
        if not view_needs_token and _hostname(request.headers.get("host", "")) not in LOOPBACK_NAMES:
            # a page of another site, its name rebound to 127.0.0.1, must not read the runs (as Jupyter checks)
            return JSONResponse({"error": "this page answers to 127.0.0.1 or localhost only"}, status_code=403)
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or \
            request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        acts = request.method != "GET"  # starts or stops a run: the token on every address
        if (view_needs_token or acts) and not hmac.compare_digest(given.encode(), token.encode()):
            what = "starting or stopping a run" if acts else "this page"
            return JSONResponse({"error": f"{what} needs the token posttrain ui printed at start-up "
                                          "(open the URL it printed, or send Authorization: Bearer TOKEN)"},
                                status_code=401)
        if acts and request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # a form another site posts cannot be JSON without the browser asking this server first (CORS)
            return JSONResponse({"error": "send a JSON body (content-type: application/json)"}, status_code=415)
        response = await call_next(request)
        if request.query_params.get("token") and hmac.compare_digest(request.query_params["token"].encode(),
                                                                     token.encode()):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    def _run(run_id: str) -> Path:
        run = run_ids(roots).get(run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id!r} under the folders this page serves")
        return run

    @app.get("/", response_class=HTMLResponse)
    def page():
        return PAGE.read_text(encoding="utf-8")

    @app.get("/static/{name}")
    def script(name: str):
        if name not in SCRIPTS:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC / name, media_type="text/javascript")

    @app.get("/api/runs")
    def runs():
        return {"roots": [str(root) for root in roots],
                "runs": [_overview(run_id, path) for run_id, path in run_ids(roots).items()]}

    @app.get("/api/run")
    def run(id: str):
        path = _run(id)
        return {**_overview(id, path), "resumable": _resumable(path)}

    def _resumable(path: Path) -> bool:
        return any(Path(r["run_dir"]) == path.resolve() for r in launches.records())

    @app.get("/api/stage")
    def stage(id: str, stage: str):
        try:
            details = stage_details(_run(id), stage)
        except PosttrainError as e:
            raise HTTPException(404, str(e)) from None
        if details is None:
            raise HTTPException(404, f"run {id!r} has no stage {stage!r}")
        return details

    @app.get("/api/compare")
    def compare(id: list[str] = Query(...)):
        paths = [_run(run_id) for run_id in id]
        try:
            diffs = [{"id": run_id, "against": id[0], "stages": config_diff(paths[0], path)}
                     for run_id, path in zip(id[1:], paths[1:])]
        except PosttrainError as e:
            raise HTTPException(404, str(e)) from None
        runs = [_overview(run_id, path) for run_id, path in zip(id, paths)]
        for entry, path in zip(runs, paths):
            entry["evals"] = {s["name"]: stage_details(path, s["name"]) for s in entry["stages"]
                              if s.get("type") == "eval"}
        return {"runs": runs, "diffs": diffs}

    @app.get("/api/launches")
    def launch_list():
        return {"recipes_dir": str(recipes_dir), "recipes": recipe_names(recipes_dir),
                "launches": launches.records()[::-1]}

    @app.get("/api/launch/log")
    def launch_log(launch: str, offset: int = 0):
        try:
            return launches.log(launch, offset)
        except (KeyError, OSError):
            raise HTTPException(404, f"no launch {launch!r}") from None

    def _acting(action):
        try:
            return action()
        except PosttrainError as e:
            raise HTTPException(400, str(e)) from None

    @app.post("/api/launch")
    def launch(recipe: str = Body(...), overrides: list[str] = Body([])):
        return _acting(lambda: launches.start(recipe, overrides))

    @app.post("/api/stop")
    def stop(id: str = Body(..., embed=True)):
        return _acting(lambda: launches.stop(_run(id).resolve()))

    @app.post("/api/resume")
    def resume(id: str = Body(..., embed=True)):
        return _acting(lambda: launches.resume(_run(id).resolve()))

    @app.get("/api/log")
    def log(id: str, stage: str, offset: int = 0):
        path = _run(id)
        try:
            stages = {row["name"] for row in stage_states(path)}
        except (PosttrainError, KeyError, TypeError, AttributeError):  # a broken manifest: _overview says what
            stages = set()
        if stage not in stages:
            raise HTTPException(404, f"run {id!r} has no stage {stage!r}")
        rows, offset = read_log(path / stage / "trainer_log.jsonl", max(offset, 0))
        return {"rows": rows, "offset": offset}

    return app
