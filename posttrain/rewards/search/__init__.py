"""Study-search backends: where a PubMed Boolean query is run to score a study-search answer.

The seed's reward queries live PubMed; posttrain's default is an embedded
SQLite FTS5 index (offline, deterministic). The backend is chosen once per
process: `configure(index=PATH)`, or the `POSTTRAIN_SEARCH_INDEX` environment
variable (how a VERL worker, which loads the reward file by path, finds it).
"""

from __future__ import annotations

import os
import threading

from posttrain.errors import ConfigError

_configured: dict = {}
_local = threading.local()


def configure(index: str | None = None) -> None:
    """Use the FTS5 index at `index` for study-search rewards in this process."""
    _configured.clear()
    if index:
        _configured["index"] = str(index)
    _local.__dict__.clear()


def search(query: str, limit: int = 1000) -> list[str]:
    """PMIDs for a PubMed Boolean query, best first; raises QueryError if it cannot be translated."""
    return _backend().search(query, limit)


def _backend():
    # one SQLite connection per thread: rewards may be scored from a thread pool
    index = _configured.get("index") or os.environ.get("POSTTRAIN_SEARCH_INDEX")
    if not index:
        raise ConfigError("study search needs an index: build one with `posttrain search build-index CORPUS "
                          "INDEX.db` and set POSTTRAIN_SEARCH_INDEX=INDEX.db (or the stage's `search_index:`)")
    backend = getattr(_local, "backend", None)
    if backend is None or backend.path != index:
        from posttrain.rewards.search.index import SearchIndex

        backend = _local.backend = SearchIndex(index)
    return backend
