"""`posttrain ui`: a local web page over run directories, to watch runs as they train."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import List

import typer
from rich.console import Console

from posttrain.cli.common import user_errors
from posttrain.cli.serve import LOCAL_HOSTS
from posttrain.errors import PosttrainError


@user_errors
def ui_command(
    runs_dirs: List[Path] = typer.Argument(None, metavar="[RUNS_DIR]...", help="Folders to find runs under "
                                           "(default: runs)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; on any other than this machine's "
                             "own, every page needs the token printed at start-up."),
    port: int = typer.Option(7860, "--port", min=0, max=65535),
    recipes: Path = typer.Option(Path("recipes"), "--recipes", help="Folder of recipes the page offers to launch."),
):
    """Watch, compare and launch runs in a browser: each run's stages, their state, progress, curves and eval
    tables, updating by themselves; a run started from a terminal shows up too. Launching or stopping a run
    needs the token printed at start-up."""
    import uvicorn

    from posttrain.ui.app import create_app

    roots = runs_dirs or [Path("runs")]
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for root in roots:
        if root.exists() and not root.is_dir():
            raise PosttrainError(f"RUNS_DIR: {root}: not a folder")
        if not root.exists():  # `posttrain ui runs` before the first `posttrain run` has made it
            err.print(f"{root}: no such folder yet; its runs show here once a pipeline writes there", markup=False)
    token = secrets.token_urlsafe(24)
    app = create_app(roots, token=token, view_needs_token=host not in LOCAL_HOSTS,
                     recipes_dir=recipes)
    shown = f"[{host}]" if ":" in host else host
    err.print(f"posttrain ui at http://{shown}:{port}/?token={token} (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
