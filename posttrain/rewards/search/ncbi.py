"""The live study-search backend: PubMed itself, through NCBI E-utilities esearch.

The seed scores study-search answers on live PubMed; this backend does the
same for runs that want PubMed's own matching and ranking rather than the
offline FTS5 index. The answer's query goes to NCBI as written (whitespace
collapsed, no translation), sorted by relevance, 1,000 PMIDs per query
(retmax), as the seed asks for them.

Live PubMed is slow, rate limited and sometimes down, so:

- the rate limit, RATE_WITHOUT_KEY (3) requests/s or RATE_WITH_KEY (10)
  with NCBI_API_KEY, holds across processes and threads: VERL's reward
  workers and TRL's accelerate processes each load this backend, and all
  that use one cache folder reserve their request slots in one SQLite file
  there (ratelimit.sqlite3: the next free slot, on the wall clock, taken in
  a `BEGIN IMMEDIATE` transaction). Processes with different cache folders
  do not share it. When that file cannot be used the process keeps to the
  rate on its own, with one warning;
- HTTP 429 and 5xx, timeouts, network errors and bodies that are not esearch
  JSON are retried with exponential backoff; after the last retry
  `NCBIUnavailable` is raised, which the reward scores 0 and logs once per
  kind of failure. Other HTTP errors (a 400) are not retried;
- an ERROR in NCBI's answer (esearchresult.ERROR, or a top-level "error")
  is nearly always the query's doing (an empty term, bad syntax): it is not
  retried and raises `QueryError`, scored 0 like an untranslatable query;
  the first one in a process is logged. Exceptions: a rate-limit error is
  retried like a 429, and an API-key error is `NCBIUnavailable`. A query that
  is not valid text (a lone surrogate) is a QueryError before anything is sent;
- answers are kept in an SQLite file (esearch.sqlite3; WAL: many threads and
  processes read and write it at once) keyed by the esearch URL, the query,
  retmax and sort, so a repeated query, in any worker or a later run, is not
  sent again, and answers of a mirror or test server (POSTTRAIN_NCBI_URL)
  never mix with PubMed's. Failures and rejected queries are not kept.
  Answers never expire, so a run's rewards stay comparable; delete the
  folder to see newer PubMed. It wants a local disk (WAL does not work on
  NFS). A cache folder that cannot be created is a PosttrainError when the
  backend is made (the first search); an SQLite error later (a lock held
  past the timeout, a full disk, a corrupt file) only logs one warning: a
  failed read is a miss, a failed write is skipped;
- the API key is read from NCBI_API_KEY only and never appears in a log, an
  error or a repr: URLs shown are redacted and response bodies (NCBI's
  rate-limit answer echoes the key) are never shown.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, NamedTuple

from posttrain.errors import ConfigError, PosttrainError
from posttrain.rewards.search.errors import SearchUnavailable
from posttrain.rewards.search.query import QueryError
from posttrain.rewards.search.rate_limit import (  # noqa: F401
    LIMIT_FILE,
    RateLimiter,
    SharedRateLimiter,
    _warn_once,
    connect,
    shared_limiter,
)

DEFAULT_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/esearch.fcgi"
RETMAX = 1000
SORT = "relevance"
RATE_WITHOUT_KEY = 3.0   # requests per second NCBI allows without an API key
RATE_WITH_KEY = 10.0     # ... and with one
RATE = RATE_WITHOUT_KEY  # the older name
POST_ABOVE = 1000    # characters of parameters: longer queries are POSTed, as URLs have length limits
log = logging.getLogger(__name__)


class NCBIUnavailable(SearchUnavailable):
    """esearch gave no answer after its retries; `kind` says how (e.g. "timeout", "HTTP 503")."""


class Hits(NamedTuple):
    pmids: list[str]   # best first, at most RETMAX
    count: int         # every PubMed match, of which pmids are the first
    cached: bool


class _Failure(NamedTuple):
    kind: str
    detail: str
    retryable: bool


class _Rejected(NamedTuple):
    """NCBI answered with an ERROR about the query: not retried, a QueryError."""
    detail: str


def cache_dir(cache: str | Path | None = None) -> Path:
    """`cache`, else $POSTTRAIN_SEARCH_CACHE, else $POSTTRAIN_CACHE/ncbi, else ~/.cache/posttrain/ncbi."""
    if cache or os.environ.get("POSTTRAIN_SEARCH_CACHE"):
        return Path(cache or os.environ["POSTTRAIN_SEARCH_CACHE"]).expanduser()
    root = os.environ.get("POSTTRAIN_CACHE")
    return Path(root).expanduser() / "ncbi" if root else Path.home() / ".cache" / "posttrain" / "ncbi"


def normalize(query: str) -> str:
    # whitespace never changes a PubMed query; case does (AND is an operator, "and" is not), so it stays
    return " ".join(query.split())


class Cache:
    """esearch answers in `folder`/esearch.sqlite3, one connection per thread.

    The folder is made at once (PosttrainError when it cannot be); SQLite
    errors afterwards are logged once and make a read a miss, a write a no-op.
    """

    def __init__(self, folder: str | Path, redact: Callable[[str], str] = str):
        self.folder = Path(folder)
        self.path = self.folder / "esearch.sqlite3"
        self._redact = redact
        self._local = threading.local()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PosttrainError(f"{self.folder}: cannot use it as the PubMed search cache ({e.strerror or e}); "
                                 "choose another folder with POSTTRAIN_SEARCH_CACHE") from None

    def get(self, key: str) -> tuple[list[str], int] | None:
        try:
            row = self._db().execute("SELECT pmids, count FROM esearch WHERE key = ?", (key,)).fetchone()
            return ([str(pmid) for pmid in json.loads(row[0])], int(row[1])) if row else None
        except (sqlite3.Error, OSError, ValueError, TypeError) as e:  # locked, unreadable, corrupt: a miss
            self._failed("read", e)
            return None

    def put(self, key: str, pmids: list[str], count: int) -> None:
        try:
            self._db().execute("INSERT OR REPLACE INTO esearch VALUES (?, ?, ?, ?)",
                               (key, json.dumps(pmids), count, time.time()))
        except (sqlite3.Error, OSError) as e:  # locked, disk full, read-only: the answer is just not kept
            self._failed("write", e)

    def _failed(self, what: str, error: Exception) -> None:
        db, self._local.db = getattr(self._local, "db", None), None   # the next call opens a fresh connection
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        _warn_once(f"cache {self.path}", "%s", self._redact(
            f"PubMed search cache {self.path}: cannot {what} it ({type(error).__name__}: {error}); searches go on "
            "without it (a failed read is a miss, a failed write is skipped); further cache errors are not logged"))

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "pid", None) != os.getpid():  # a forked child opens its own
            self.folder.mkdir(parents=True, exist_ok=True)
            # autocommit: every statement is its own transaction; the timeout waits out other writers
            db = connect(self.path, 60, "CREATE TABLE IF NOT EXISTS esearch (key TEXT PRIMARY KEY, "
                         "pmids TEXT NOT NULL, count INTEGER NOT NULL, created REAL NOT NULL)")
            self._local.db, self._local.pid = db, os.getpid()
        return db


class NCBISearch:
    """PubMed esearch behind a cache, a rate limit and retries; `search` is what the reward calls."""

    def __init__(self, url: str | None = None, cache: str | Path | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.5, limiter: RateLimiter | SharedRateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.url = url or os.environ.get("POSTTRAIN_NCBI_URL") or DEFAULT_URL
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise ConfigError(f"POSTTRAIN_NCBI_URL={self.url!r}: expected an http(s) URL of esearch.fcgi")
        self._api_key = os.environ.get("NCBI_API_KEY") or None  # the environment only: never in a config file
        self.cache = Cache(cache_dir(cache), self._redact)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.limiter = limiter or shared_limiter(RATE_WITH_KEY if self._api_key else RATE_WITHOUT_KEY,
                                                 self.cache.folder)
        self._sleep = sleep
        self._inflight: dict[str, list] = {}
        self._inflight_lock = threading.Lock()

    def __repr__(self) -> str:
        key = "set" if self._api_key else "unset"
        return f"NCBISearch(url={self.url!r}, cache={str(self.cache.folder)!r}, api_key={key})"

    def search(self, query: str, limit: int = RETMAX) -> list[str]:
        """PMIDs for a PubMed query, best first (at most RETMAX); NCBIUnavailable when NCBI gives no answer."""
        return self.esearch(query).pmids[:limit]

    def cache_key(self, query: str) -> str:
        """What the cache keeps `query`'s answer under: the esearch URL, the query as sent, retmax and sort."""
        return json.dumps([self.url, normalize(query), RETMAX, SORT])

    def esearch(self, query: str) -> Hits:
        """The cached answer, else NCBI's (then cached); threads asking the same new query send it once.

        QueryError when the query cannot be sent (empty, not valid text) or NCBI
        rejects it; NCBIUnavailable when NCBI gives no answer.
        """
        if not isinstance(query, str) or not query.strip():
            raise QueryError("empty query")
        query = normalize(query)
        try:
            query.encode("utf-8")  # what urlencode will do; a lone surrogate cannot be sent
        except UnicodeEncodeError as e:
            raise QueryError(f"the query is not valid text ({e.reason} at character {e.start})") from None
        key = self.cache_key(query)
        hit = self.cache.get(key)
        if hit is None:
            with self._only_one(key):
                hit = self.cache.get(key)  # another thread may have fetched it while this one waited
                if hit is None:
                    pmids, count = self._fetch(query)
                    self.cache.put(key, pmids, count)
                    return Hits(pmids, count, cached=False)
        return Hits(*hit, cached=True)

    @contextlib.contextmanager
    def _only_one(self, key: str):
        # a lock per query in flight, dropped when its last waiter leaves, so the table does not grow
        with self._inflight_lock:
            entry = self._inflight.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._inflight_lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._inflight[key]

    def _fetch(self, query: str) -> tuple[list[str], int]:
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            self.limiter.wait()
            result = self._attempt(query)
            if isinstance(result, _Rejected):  # the query's fault: asking again gets the same answer
                detail = self._redact(result.detail)
                _warn_once("rejected", "PubMed rejected a query (%s); such queries score 0 (further rejections are "
                           "logged at debug level)", detail)
                log.debug("PubMed rejected the query %r: %s", query[:200], detail)
                raise QueryError(f"PubMed rejected the query: {detail}")
            if not isinstance(result, _Failure):
                return result
            log.debug("PubMed esearch attempt %d failed: %s", attempt + 1, self._redact(result.detail))
            if not result.retryable:
                break
        # raised outside any except block, so no urllib exception (whose URL holds the key) rides along
        message = f"PubMed esearch failed after {attempt + 1} attempt(s): {result.detail} ({self._shown_url(query)})"
        raise NCBIUnavailable(result.kind, self._redact(message))

    def _attempt(self, query: str) -> tuple[list[str], int] | _Failure | _Rejected:
        try:
            with urllib.request.urlopen(self._request(query), timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            return _Failure(f"HTTP {e.code}", f"HTTP {e.code} {e.reason}", e.code == 429 or e.code >= 500)
        except urllib.error.URLError as e:  # connect errors; a connect timeout arrives as its reason
            kind = "timeout" if isinstance(e.reason, TimeoutError) else "network"
            return _Failure(kind, f"{kind}: {e.reason}", True)
        except TimeoutError:
            return _Failure("timeout", f"timeout: no answer in {self.timeout:g} s", True)
        except (OSError, http.client.HTTPException) as e:
            return _Failure("network", f"network: {type(e).__name__}: {e}", True)
        return _parse(body)

    def _params(self, query: str, api_key: str | None) -> str:
        params = {"db": "pubmed", "term": query, "retmax": RETMAX, "sort": SORT, "retmode": "json",
                  "tool": "posttrain"}
        if api_key:
            params["api_key"] = api_key
        return urllib.parse.urlencode(params)

    def _request(self, query: str) -> urllib.request.Request:
        data = self._params(query, self._api_key)
        headers = {"User-Agent": "posttrain"}
        if len(data) > POST_ABOVE:
            return urllib.request.Request(self.url, data=data.encode(), headers=headers)
        return urllib.request.Request(f"{self.url}{'&' if '?' in self.url else '?'}{data}", headers=headers)

    def _shown_url(self, query: str, width: int = 300) -> str:
        url = f"{self.url}?{self._params(query, None)}" + ("&api_key=***" if self._api_key else "")
        return url if len(url) <= width else url[:width] + "..."

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def _parse(body: bytes) -> tuple[list[str], int] | _Failure | _Rejected:
    try:
        answer = json.loads(body)
        if not isinstance(answer, dict):
            raise TypeError
        result = answer.get("esearchresult")
        error = (result.get("ERROR") if isinstance(result, dict) else None) or answer.get("error")
        if error:
            text, lowered = f"NCBI error: {str(error)[:200]}", str(error).lower()
            if "rate limit" in lowered:   # NCBI's rate-limit answer, should it come without its 429
                return _Failure("rate limit", text, True)
            if "api key" in lowered or "api-key" in lowered:   # the setup's fault, not the query's
                return _Failure("NCBI error", text, False)
            return _Rejected(text)
        pmids = [str(pmid) for pmid in result["idlist"]]
        return pmids, int(result.get("count", len(pmids)))
    except (ValueError, KeyError, TypeError):  # an HTML error page, a truncated body
        return _Failure("bad response", "bad response: not esearch JSON", True)
