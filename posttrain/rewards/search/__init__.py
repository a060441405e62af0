"""Study-search backends: where a PubMed Boolean query is run to score a study-search answer.

The seed's reward queries live PubMed; posttrain's default is an embedded
SQLite FTS5 index (offline, deterministic), and the live backend (`ncbi.py`)
is there for runs that want PubMed itself. The backend is chosen once per
process with `configure(index=..., backend=..., cache=...)` or, for what
configure leaves unset, the environment (how a VERL worker, which loads the
reward file by path, finds its settings):

  POSTTRAIN_SEARCH_BACKEND  "index" (the default) or "ncbi"
  POSTTRAIN_SEARCH_INDEX    the FTS5 file of the index backend
  POSTTRAIN_SEARCH_CACHE    the ncbi backend's answer cache, and the file through
                            which its processes share NCBI's rate limit (default
                            $POSTTRAIN_CACHE/ncbi or ~/.cache/posttrain/ncbi)
  NCBI_API_KEY, POSTTRAIN_NCBI_URL  see ncbi.py

`search(query, limit)` is the one function the reward calls, whichever backend.
"""

from __future__ import annotations

import logging
import os
import threading

from posttrain.errors import ConfigError
from posttrain.rewards.search.errors import SearchUnavailable  # noqa: F401 (where callers find it)
from posttrain.rewards.search.index import SearchIndex
from posttrain.rewards.search.ncbi import NCBISearch

BACKENDS = ("index", "ncbi")
log = logging.getLogger(__name__)

_configured: dict = {}            # configure()'s arguments that were given, by name
_local = threading.local()        # the index backend: one SQLite connection per thread
_shared: dict = {}                # the ncbi backend: one per process (its limiter and cache are thread-safe)
_shared_lock = threading.Lock()


def configure(index: str | None = None, backend: str | None = None, cache: str | None = None) -> None:
    """Choose this process's study-search backend.

    backend: "index" searches the FTS5 file `index`; "ncbi" searches live PubMed,
    its answers kept in the folder `cache`. What is not given here comes from
    the environment (see above); an `index` given without a backend means the
    index backend, whatever POSTTRAIN_SEARCH_BACKEND says.
    """
    if backend and backend not in BACKENDS:
        raise ConfigError(f"search backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    _configured.clear()
    _configured.update({name: str(value) for name, value in
                        (("index", index), ("backend", backend), ("cache", cache)) if value})
    _local.__dict__.clear()
    with _shared_lock:
        _shared.clear()


def search(query: str, limit: int = 1000) -> list[str]:
    """PMIDs for a PubMed Boolean query, best first.

    Raises QueryError when the query cannot be run (the index cannot translate
    it, or it is empty) and SearchUnavailable when the backend gives no answer.
    """
    return _backend().search(query, limit)


def _backend_name() -> str:
    if "backend" in _configured:
        return _configured["backend"]
    if "index" in _configured:
        return "index"
    name = os.environ.get("POSTTRAIN_SEARCH_BACKEND", "").strip().lower() or "index"
    if name not in BACKENDS:
        raise ConfigError(f"POSTTRAIN_SEARCH_BACKEND={name!r}: expected one of {', '.join(BACKENDS)}")
    return name


def _backend():
    return _ncbi() if _backend_name() == "ncbi" else _index()


def _index():
    # one SQLite connection per thread: rewards may be scored from a thread pool
    index = _configured.get("index") or os.environ.get("POSTTRAIN_SEARCH_INDEX")
    if not index:
        raise ConfigError("study search needs a backend: build an index with `posttrain search build-index CORPUS "
                          "INDEX.db` and set POSTTRAIN_SEARCH_INDEX=INDEX.db (or the stage's `search_index:`), "
                          "or search live PubMed with POSTTRAIN_SEARCH_BACKEND=ncbi (NCBI_API_KEY raises its "
                          "rate limit from 3 to 10 requests/s)")
    backend = getattr(_local, "backend", None)
    if backend is None or backend.path != index:
        backend = _local.backend = SearchIndex(index)
    return backend


_NCBI_ENV = ("POSTTRAIN_SEARCH_CACHE", "POSTTRAIN_CACHE", "POSTTRAIN_NCBI_URL", "NCBI_API_KEY")


def _ncbi():
    # a new backend object when any setting it reads has changed, else the process's one
    settings = (_configured.get("cache"),) + tuple(os.environ.get(name) for name in _NCBI_ENV)
    with _shared_lock:
        if _shared.get("settings") != settings:
            _shared["backend"] = NCBISearch(cache=_configured.get("cache"))
            _shared["settings"] = settings
        return _shared["backend"]
