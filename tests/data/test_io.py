"""Atomic writes land as ordinary files: readable as the umask allows, not mkstemp's private 0600."""

from __future__ import annotations

import os
import stat

import pytest

from posttrain.data import io


def test_an_atomic_write_gets_the_umask_mode_not_0600(tmp_path):
    io.write_json(tmp_path / "metrics.json", {"a": 1})
    mode = stat.S_IMODE(os.stat(tmp_path / "metrics.json").st_mode)
    assert mode == 0o666 & ~io._UMASK
    if io._UMASK == 0o022:
        assert mode == 0o644


def test_a_failed_atomic_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
