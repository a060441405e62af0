"""Delete or overwrite only what posttrain owns.

Every removal posttrain makes (a stage started over by `--force` or a changed
config, a model replaced at the end of training, half-written checkpoints, an
export or tiny model replaced) goes through `remove_tree`, which first checks
that the path, followed through any symbolic link, lies inside the directory
that owns it. A link planted inside a run directory that points elsewhere is
refused before a stage writes through it (`check_no_links_out`): transformers
prunes checkpoints and appends logs through whatever path it is given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from posttrain.errors import PosttrainError


class OutsideError(PosttrainError):
    """A path posttrain was about to delete or write through lies outside the directory that owns it."""


def _inside(path: str, owner: str) -> bool:
    return os.path.commonpath([path, owner]) == owner and path != owner


def check_inside(path: str | os.PathLike, owner: str | os.PathLike) -> None:
    """Raise unless `path` lies strictly inside `owner`, both as written and with every symbolic link followed."""
    if not _inside(os.path.abspath(path), os.path.abspath(owner)):
        raise OutsideError(f"{path}: not inside {owner}; posttrain deletes and writes only inside the directory "
                           "it owns")
    real = os.path.realpath(path)
    if not _inside(real, os.path.realpath(owner)):
        raise OutsideError(f"{path}: leads to {real}, outside {owner}, through a symbolic link; posttrain does "
                           "not delete or write through it. Remove the link, or choose another directory")


def remove_tree(path: str | os.PathLike, owner: str | os.PathLike) -> None:
    """Remove the file or directory `path` after `check_inside(path, owner)`; nothing there is no error.

    A link that points inside `owner` is unlinked, not followed; links further down are unlinked too (rmtree
    never follows them).
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    check_inside(path, owner)
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def check_no_links_out(folder: str | os.PathLike, owner: str | os.PathLike | None = None) -> None:
    """Raise if any symbolic link below `folder` points outside `owner` (default: `folder` itself)."""
    folder = Path(folder)
    owner = Path(owner) if owner is not None else folder
    if not folder.is_dir():
        return
    for parent, dirs, files in os.walk(folder):  # os.walk does not descend into linked directories
        for name in dirs + files:
            path = Path(parent, name)
            if path.is_symlink():
                check_inside(path, owner)
