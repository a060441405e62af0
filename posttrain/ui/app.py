"""The dashboard's HTTP side: a page, and the JSON it polls.

Only runs found under the given folders are served, looked up by the id the run list gave them, so no path a
request names is ever opened. The server listens on 127.0.0.1 by default; on any other address every request
needs the token printed at start-up (a header, a `token` query parameter, or the cookie the page sets from it).
On loopback a request must name 127.0.0.1 or localhost as its host, so a page of another site whose name
is rebound to 127.0.0.1 cannot read the runs. Everything a run wrote reaches the page as JSON and is put in
with textContent, never as HTML.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from posttrain.errors import PosttrainError
from posttrain.runs.manifest import stage_states
from posttrain.runs.watch import find_runs, overview, read_log

COOKIE = "posttrain_ui_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
PAGE = Path(__file__).with_name("page.html")
CHART_JS = Path(__file__).with_name("static") / "chart.min.js"  # Chart.js 3.9.1, MIT (static/README.md)


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


def create_app(roots, *, token: str, view_needs_token: bool):
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    roots = [Path(root) for root in roots]
    app = FastAPI(title="posttrain ui", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def _token(request: Request, call_next):
        if not view_needs_token and _hostname(request.headers.get("host", "")) not in LOOPBACK_NAMES:
            # a page of another site, its name rebound to 127.0.0.1, must not read the runs (as Jupyter checks)
            return JSONResponse({"error": "this page answers to 127.0.0.1 or localhost only"}, status_code=403)
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or \
            request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        if view_needs_token and not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"error": "this page needs the token posttrain ui printed at start-up "
                                          "(open the URL it printed, or send Authorization: Bearer TOKEN)"},
                                status_code=401)
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

    @app.get("/static/chart.min.js")
    def chart_js():
        return FileResponse(CHART_JS, media_type="text/javascript")

    @app.get("/api/runs")
    def runs():
        return {"roots": [str(root) for root in roots],
                "runs": [_overview(run_id, path) for run_id, path in run_ids(roots).items()]}

    @app.get("/api/run")
    def run(id: str):
        return _overview(id, _run(id))

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
