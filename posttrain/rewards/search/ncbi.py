"""The live study-search backend: PubMed itself, through NCBI E-utilities esearch.

The seed scores study-search answers on live PubMed; this backend does the
same for runs that want PubMed's own matching and ranking rather than the
offline FTS5 index. The answer's query goes to NCBI as written (whitespace
collapsed, no translation), sorted by relevance, 1,000 PMIDs per query
(retmax), as the seed asks for them.

Live PubMed is slow, rate limited and sometimes down, so:

- one limiter per process keeps to NCBI's 3 requests/s (10 with an API key)
  across threads; processes do not share it, so many workers meet 429s,
  which are retried like network errors, timeouts and 5xx, with exponential
  backoff; after the last retry `NCBIUnavailable` is raised, which the
  reward scores 0 and logs once per kind of failure;
- answers are kept in an SQLite file (WAL: many threads and processes read
  and write it at once) keyed by the query, retmax and sort, so a repeated
  query, in any worker or a later run, is not sent again. Failures are not
  kept. Answers never expire, so a run's rewards stay comparable; delete the
  folder to see newer PubMed. It wants a local disk (WAL does not work on NFS);
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
from posttrain.rewards.search import SearchUnavailable
from posttrain.rewards.search.query import QueryError

DEFAULT_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/esearch.fcgi"
RETMAX = 1000
SORT = "relevance"
RATE = 3.0           # requests per second NCBI allows without an API key
RATE_WITH_KEY = 10.0
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


def cache_dir(cache: str | Path | None = None) -> Path:
    """`cache`, else $POSTTRAIN_SEARCH_CACHE, else $POSTTRAIN_CACHE/ncbi, else ~/.cache/posttrain/ncbi."""
    if cache or os.environ.get("POSTTRAIN_SEARCH_CACHE"):
        return Path(cache or os.environ["POSTTRAIN_SEARCH_CACHE"]).expanduser()
    root = os.environ.get("POSTTRAIN_CACHE")
    return Path(root).expanduser() / "ncbi" if root else Path.home() / ".cache" / "posttrain" / "ncbi"


def normalize(query: str) -> str:
    # whitespace never changes a PubMed query; case does (AND is an operator, "and" is not), so it stays
    return " ".join(query.split())


class RateLimiter:
    """At most `rate` calls of `wait` per second, across threads: each caller reserves the next free slot."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate
        self.clock, self.sleep = clock, sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until this caller may send; return how long it waited."""
        with self._lock:  # reserve under the lock, sleep outside it, so other threads queue behind meanwhile
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            self.sleep(delay)
        return delay


_limiters: dict[float, RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(rate: float) -> RateLimiter:
    """The process's limiter for `rate`: every backend object in the process queues on the same one."""
    with _limiters_lock:
        return _limiters.setdefault(rate, RateLimiter(rate))


class Cache:
    """esearch answers in `folder`/esearch.sqlite3, one connection per thread."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / "esearch.sqlite3"
        self._local = threading.local()

    def get(self, key: str) -> tuple[list[str], int] | None:
        row = self._db().execute("SELECT pmids, count FROM esearch WHERE key = ?", (key,)).fetchone()
        return (json.loads(row[0]), row[1]) if row else None

    def put(self, key: str, pmids: list[str], count: int) -> None:
        self._db().execute("INSERT OR REPLACE INTO esearch VALUES (?, ?, ?, ?)",
                           (key, json.dumps(pmids), count, time.time()))

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                # autocommit: every statement is its own transaction; the timeout waits out other writers
                db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS esearch (key TEXT PRIMARY KEY, pmids TEXT NOT NULL, "
                           "count INTEGER NOT NULL, created REAL NOT NULL)")
            except (OSError, sqlite3.Error) as e:
                raise PosttrainError(f"{self.path}: cannot use it as the PubMed search cache ({e}); "
                                     "choose another folder with POSTTRAIN_SEARCH_CACHE") from None
            self._local.db = db
        return db


class NCBISearch:
    """PubMed esearch behind a cache, a rate limit and retries; `search` is what the reward calls."""

    def __init__(self, url: str | None = None, cache: str | Path | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.5, limiter: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.url = url or os.environ.get("POSTTRAIN_NCBI_URL") or DEFAULT_URL
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise ConfigError(f"POSTTRAIN_NCBI_URL={self.url!r}: expected an http(s) URL of esearch.fcgi")
        self._api_key = os.environ.get("NCBI_API_KEY") or None  # the environment only: never in a config file
        self.cache = Cache(cache_dir(cache))
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.limiter = limiter or shared_limiter(RATE_WITH_KEY if self._api_key else RATE)
        self._sleep = sleep
        self._inflight: dict[str, list] = {}
        self._inflight_lock = threading.Lock()

    def __repr__(self) -> str:
        key = "set" if self._api_key else "unset"
        return f"NCBISearch(url={self.url!r}, cache={str(self.cache.folder)!r}, api_key={key})"

    def search(self, query: str, limit: int = RETMAX) -> list[str]:
        """PMIDs for a PubMed query, best first (at most RETMAX); NCBIUnavailable when NCBI gives no answer."""
        return self.esearch(query).pmids[:limit]

    def esearch(self, query: str) -> Hits:
        """The cached answer, else NCBI's (then cached); threads asking the same new query send it once."""
        if not isinstance(query, str) or not query.strip():
            raise QueryError("empty query")
        query = normalize(query)
        key = json.dumps([query, RETMAX, SORT])
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
            if not isinstance(result, _Failure):
                return result
            log.debug("PubMed esearch attempt %d failed: %s", attempt + 1, self._redact(result.detail))
            if not result.retryable:
                break
        # raised outside any except block, so no urllib exception (whose URL holds the key) rides along
        message = f"PubMed esearch failed after {attempt + 1} attempt(s): {result.detail} ({self._shown_url(query)})"
        raise NCBIUnavailable(result.kind, self._redact(message))

    def _attempt(self, query: str) -> tuple[list[str], int] | _Failure:
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


def _parse(body: bytes) -> tuple[list[str], int] | _Failure:
    try:
        result = json.loads(body)["esearchresult"]
        if "ERROR" in result:  # NCBI's own failure ("Search Backend failed"), usually passing
            return _Failure("NCBI error", f"NCBI error: {str(result['ERROR'])[:200]}", True)
        pmids = [str(pmid) for pmid in result["idlist"]]
        return pmids, int(result.get("count", len(pmids)))
    except (ValueError, KeyError, TypeError):  # an HTML error page, a truncated body
        return _Failure("bad response", "bad response: not esearch JSON", True)
