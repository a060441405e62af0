"""The live PubMed backend against a local esearch server: what is sent, cache, retries, rate limit, key hygiene.

Nothing here reaches the network: every backend points at a server on
127.0.0.1 started by the test, and the real NCBI URL is replaced by a dead
local port for the whole module. Requests get a generous timeout, so that a
slow reply on a loaded machine is not a retry; only the tests of timeouts
use a short one, against a server that stalls far longer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from posttrain.cli import app
from posttrain.errors import ConfigError, PosttrainError
from posttrain.rewards import harness, search
from posttrain.rewards.clinical import study_search
from posttrain.rewards.search import errors as search_errors
from posttrain.rewards.search import ncbi, rate_limit
from posttrain.rewards.search.ncbi import NCBISearch, NCBIUnavailable, RateLimiter, SharedRateLimiter
from posttrain.rewards.search.query import QueryError

KEY = "k3y-SECRET-0123456789abcdef"
DEAD_URL = "http://127.0.0.1:9/esearch.fcgi"   # the discard port: nothing answers
TIMEOUT = 5.0                                   # seconds: a local reply, however loaded the machine
SHORT_TIMEOUT = 0.4                             # only where a test wants the "timeout" failure
STALL = 3.0                                     # how long the server sits on a "timeout" failure


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that gave up on a slow answer: not news
        pass


class FakeNCBI:
    """esearch on 127.0.0.1: records each request's parameters and method; `fail` queues failures for the next ones."""

    def __init__(self):
        self.requests: list[dict] = []
        # "500", "429", "400", "timeout", "garbage", "ERROR", "error", "rate error", "key error": one per request
        self.failures: list[str] = []
        self.results: dict[str, list[str]] = {}
        self.delay = 0.0
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/entrez/eutils/esearch.fcgi"

    def fail(self, *kinds: str) -> None:
        self.failures.extend(kinds)

    def pmids(self, term: str) -> list[str]:
        # unknown terms: 1,500 matches, numbered after the term so different queries differ
        return self.results.get(term, [f"{len(term)}{i:04d}" for i in range(1500)])

    def answer(self, params: dict, method: str) -> tuple[int, bytes, float]:
        with self.lock:
            self.requests.append({**params, "method": method})
            failure = self.failures.pop(0) if self.failures else None
        if failure == "timeout":
            return 200, b"{}", STALL
        if failure in ("500", "400"):
            return int(failure), b"<html>oops</html>", 0
        if failure == "429":  # NCBI's own rate-limit answer echoes the key
            return 429, json.dumps({"error": "API rate limit exceeded", "api-key": params.get("api_key")}).encode(), 0
        if failure == "garbage":
            return 200, b"<html>Service unavailable</html>", 0
        if failure == "ERROR":  # what NCBI answers to an empty term
            return 200, json.dumps({"header": {"type": "esearch"}, "esearchresult": {
                "ERROR": "Empty term and query_key - nothing todo"}}).encode(), 0
        if failure in ("error", "rate error", "key error"):
            error = {"error": "Invalid query syntax", "rate error": "API rate limit exceeded",
                     "key error": "API key invalid"}[failure]
            return 200, json.dumps({"error": error, "api-key": params.get("api_key")}).encode(), 0
        pmids = self.pmids(params["term"])
        body = {"header": {"type": "esearch"},
                "esearchresult": {"count": str(len(pmids)), "idlist": pmids[:int(params["retmax"])]}}
        return 200, json.dumps(body).encode(), self.delay

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._reply(urllib.parse.urlsplit(self.path).query, "GET")

            def do_POST(self):
                self._reply(self.rfile.read(int(self.headers["Content-Length"])).decode(), "POST")

            def _reply(self, query: str, method: str):
                params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
                status, body, delay = fake.answer(params, method)
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    previous = dict(search._configured)
    monkeypatch.setattr(ncbi, "DEFAULT_URL", DEAD_URL)
    monkeypatch.setattr(rate_limit, "_warned", set())
    monkeypatch.setattr(rate_limit, "_limiters", {})
    for name in ("NCBI_API_KEY", "POSTTRAIN_NCBI_URL", "POSTTRAIN_SEARCH_BACKEND", "POSTTRAIN_SEARCH_INDEX",
                 "POSTTRAIN_SEARCH_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path / "posttrain-cache"))
    for name in ("no_proxy", "NO_PROXY"):  # a proxy in the environment must not see the local server's traffic
        monkeypatch.setenv(name, "*")
    monkeypatch.setattr(search_errors, "_warned", set())
    yield
    search.configure(**previous)


@pytest.fixture
def server():
    fake = FakeNCBI()
    yield fake
    fake.close()


@pytest.fixture
def logs():
    # a handler on the package's logger: the CLI may have stopped "posttrain" propagating to caplog's root handler
    logger, handler = logging.getLogger("posttrain.rewards.search"), Records()
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def backend(server, tmp_path, **kwargs) -> NCBISearch:
    settings = dict(url=server.url, cache=tmp_path / "cache", timeout=TIMEOUT, backoff=0.01,
                    limiter=RateLimiter(1000.0))
    return NCBISearch(**{**settings, **kwargs})


# ---- what is sent and what comes back ------------------------------------------------------------------------------

def test_the_request_is_esearch_on_pubmed_by_relevance(server, tmp_path):
    backend(server, tmp_path).search('"heart failure"[tiab]  AND\ntrial*', 100)
    assert server.requests == [{"db": "pubmed", "term": '"heart failure"[tiab] AND trial*', "retmax": "1000",
                                "sort": "relevance", "retmode": "json", "tool": "posttrain", "method": "GET"}]


def test_the_api_key_is_sent_only_when_the_environment_has_one(server, tmp_path, monkeypatch):
    backend(server, tmp_path).search("heart")
    monkeypatch.setenv("NCBI_API_KEY", KEY)
    backend(server, tmp_path / "other").search("heart")
    assert "api_key" not in server.requests[0]
    assert server.requests[1]["api_key"] == KEY


def test_pmids_come_best_first_and_limit_cuts_them(server, tmp_path):
    server.results["statin"] = ["30", "10", "20", "5"]
    found = backend(server, tmp_path)
    assert found.search("statin") == ["30", "10", "20", "5"]
    assert found.search("statin", 2) == ["30", "10"]
    hits = found.esearch("heart")
    assert len(hits.pmids) == 1000 and hits.count == 1500   # retmax keeps 1,000 of PubMed's count


def test_a_long_query_is_posted(server, tmp_path):
    query = " OR ".join(f"term{i}[tiab]" for i in range(300))
    assert backend(server, tmp_path).search(query, 3) == server.pmids(query)[:3]
    assert server.requests[0]["method"] == "POST" and server.requests[0]["term"] == query


def test_an_empty_query_is_a_query_error_and_sends_nothing(server, tmp_path):
    with pytest.raises(QueryError):
        backend(server, tmp_path).search("  \n ")
    assert not server.requests


def test_the_url_can_come_from_the_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_NCBI_URL", server.url)
    assert NCBISearch(cache=tmp_path, limiter=RateLimiter(1000.0)).search("heart", 1) == server.pmids("heart")[:1]
    with pytest.raises(ConfigError, match="POSTTRAIN_NCBI_URL"):
        NCBISearch(url="eutils.ncbi.nlm.nih.gov", cache=tmp_path)


# ---- cache ---------------------------------------------------------------------------------------------------------

def test_a_repeated_query_is_answered_from_the_cache(server, tmp_path):
    found = backend(server, tmp_path)
    first = found.esearch("heart AND trial")
    again = found.esearch("  heart  AND trial ")          # the same query once whitespace is collapsed
    restarted = backend(server, tmp_path).esearch("heart AND trial")  # a new object on the same folder
    assert len(server.requests) == 1
    assert (first.cached, again.cached, restarted.cached) == (False, True, True)
    assert first.pmids == again.pmids == restarted.pmids
    found.search("heart and trial")                       # case matters to PubMed: a different query
    assert len(server.requests) == 2


def test_the_cache_outlives_the_process(server, tmp_path):
    backend(server, tmp_path).search("aspirin")
    code = ("from posttrain.rewards.search.ncbi import NCBISearch; import sys; "
            "print(NCBISearch(url=sys.argv[1], cache=sys.argv[2], retries=0).esearch('aspirin').cached)")
    done = subprocess.run([sys.executable, "-c", code, server.url, str(tmp_path / "cache")], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
    assert len(server.requests) == 1


def test_the_cache_key_holds_the_url(server, tmp_path):
    # a mirror or test server (POSTTRAIN_NCBI_URL) on the default cache folder must not answer for PubMed
    mirror = FakeNCBI()
    try:
        mirror.results["heart"] = ["7", "8"]
        assert backend(server, tmp_path).search("heart", 2) == server.pmids("heart")[:2]
        assert backend(mirror, tmp_path).search("heart", 2) == ["7", "8"]          # same folder, not the same answer
        assert backend(server, tmp_path).esearch("heart").cached
        assert len(server.requests) == len(mirror.requests) == 1
    finally:
        mirror.close()
    found = backend(server, tmp_path)
    assert json.loads(found.cache_key("  heart  attack ")) == [server.url, "heart attack", 1000, "relevance"]


def test_a_cache_folder_that_cannot_be_made_is_a_clear_error(server, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(PosttrainError, match="cannot use it as the PubMed search cache.*POSTTRAIN_SEARCH_CACHE"):
        backend(server, tmp_path, cache=tmp_path / "file" / "cache")


def test_a_corrupt_cache_file_is_a_warning_and_a_miss(server, tmp_path, monkeypatch, logs):
    monkeypatch.setenv("NCBI_API_KEY", KEY)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "esearch.sqlite3").write_bytes(b"this is not an SQLite file" * 100)
    found = backend(server, tmp_path)
    assert found.search("heart", 2) == server.pmids("heart")[:2]
    hits = found.esearch("heart")                  # nothing could be kept: asked again
    assert not hits.cached and len(server.requests) == 2
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings            # once, however many reads and writes failed
    assert "esearch.sqlite3" in warnings[0] and "searches go on without it" in warnings[0]
    assert KEY not in logs.text()


@pytest.mark.parametrize("fails", ["get", "put", "both"])
def test_a_cache_error_mid_run_does_not_raise(server, tmp_path, monkeypatch, logs, fails):
    found = backend(server, tmp_path)
    found.search("warm")                           # the cache works, then the database stays locked
    real = found.cache._db

    class Locked:
        def execute(self, sql, *args):
            if sql.startswith("SELECT") and fails in ("get", "both") or \
                    sql.startswith("INSERT") and fails in ("put", "both"):
                raise sqlite3.OperationalError("database is locked")
            return real().execute(sql, *args)

    monkeypatch.setattr(found.cache, "_db", Locked)
    assert found.search("heart", 2) == server.pmids("heart")[:2]   # a failed get is a miss, a failed put is skipped
    assert found.esearch("warm").cached is (fails == "put")        # read while reads work
    assert len(server.requests) == (2 if fails == "put" else 3)
    monkeypatch.setattr(found.cache, "_db", real)                  # the lock clears
    assert found.esearch("heart").cached is (fails == "get")       # kept only when the put worked
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "database is locked" in warnings[0]


def test_the_default_cache_folder(monkeypatch, tmp_path):
    assert ncbi.cache_dir() == tmp_path / "posttrain-cache" / "ncbi"
    monkeypatch.setenv("POSTTRAIN_SEARCH_CACHE", str(tmp_path / "here"))
    assert ncbi.cache_dir() == tmp_path / "here"
    assert ncbi.cache_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("POSTTRAIN_SEARCH_CACHE")
    monkeypatch.delenv("POSTTRAIN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ncbi.cache_dir() == tmp_path / "home" / ".cache" / "posttrain" / "ncbi"


def test_a_failed_search_is_not_cached(server, tmp_path):
    found = backend(server, tmp_path, retries=0)
    server.fail("500")
    with pytest.raises(NCBIUnavailable):
        found.search("heart")
    assert found.search("heart", 2) == server.pmids("heart")[:2]
    assert found.esearch("heart").cached
    assert len(server.requests) == 2


# ---- retries -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", ["500", "429", "timeout", "garbage", "rate error"])
def test_passing_failures_are_retried_with_backoff(server, tmp_path, failure):
    clock = FakeClock()
    server.fail(failure, failure)
    found = backend(server, tmp_path, backoff=0.5, sleep=clock.sleep,
                    timeout=SHORT_TIMEOUT if failure == "timeout" else TIMEOUT)
    assert found.search("heart", 3) == server.pmids("heart")[:3]
    assert len(server.requests) == 3
    assert clock.sleeps == [0.5, 1.0]


@pytest.mark.parametrize("failure, kind", [("500", "HTTP 500"), ("429", "HTTP 429"), ("timeout", "timeout"),
                                           ("garbage", "bad response")])
def test_retries_run_out_with_a_clear_error(server, tmp_path, failure, kind):
    clock = FakeClock()
    server.fail(*[failure] * 4)
    timeout = SHORT_TIMEOUT if failure == "timeout" else TIMEOUT
    with pytest.raises(NCBIUnavailable, match=rf"PubMed esearch failed after 4 attempt\(s\): {kind}") as caught:
        backend(server, tmp_path, backoff=0.5, sleep=clock.sleep, timeout=timeout).search("heart")
    assert caught.value.kind == kind
    assert clock.sleeps == [0.5, 1.0, 2.0] and len(server.requests) == 4


def test_a_client_error_is_not_retried(server, tmp_path):
    server.fail("400")
    with pytest.raises(NCBIUnavailable, match="after 1 attempt"):
        backend(server, tmp_path).search("heart")
    assert len(server.requests) == 1


@pytest.mark.parametrize("failure, message", [("ERROR", "Empty term and query_key"), ("error", "Invalid query syntax")])
def test_an_ncbi_error_answer_is_the_querys_fault_and_costs_one_request(server, tmp_path, monkeypatch, failure,
                                                                       message, logs):
    monkeypatch.setenv("NCBI_API_KEY", KEY)
    clock = FakeClock()
    server.fail(failure, failure)
    found = backend(server, tmp_path, sleep=clock.sleep)
    with pytest.raises(QueryError, match=f"PubMed rejected the query: NCBI error: {message}"):
        found.search("heart")
    assert len(server.requests) == 1 and not clock.sleeps          # not retried
    assert found.cache.get(found.cache_key("heart")) is None        # nor kept
    assert KEY not in logs.text()
    _configure_live(server, tmp_path, monkeypatch)                  # the reward scores it 0, as a bad query
    assert study_search("<answer>heart</answer>", {"relevant_pmids": ["1"]}) == 0.0
    assert len(server.requests) == 2
    assert study_search("<answer>heart</answer>", {"relevant_pmids": [server.pmids("heart")[0]]}) == pytest.approx(1.1)


def test_an_api_key_error_is_the_setups_fault(server, tmp_path, monkeypatch):
    monkeypatch.setenv("NCBI_API_KEY", KEY)
    server.fail("key error")
    with pytest.raises(NCBIUnavailable, match="after 1 attempt.*API key invalid") as caught:
        backend(server, tmp_path).search("heart")
    assert caught.value.kind == "NCBI error" and KEY not in str(caught.value)


def test_a_query_that_is_not_valid_text_is_a_query_error_and_sends_nothing(server, tmp_path):
    with pytest.raises(QueryError, match="not valid text"):
        backend(server, tmp_path).search("heart \ud800 trial")
    assert not server.requests


def test_every_attempt_waits_for_the_rate_limit(server, tmp_path):
    clock = FakeClock()
    server.fail("500")
    found = backend(server, tmp_path, limiter=RateLimiter(3, clock, clock.sleep))
    found.search("heart")
    found.search("stroke")
    assert clock.sleeps == pytest.approx([1 / 3, 1 / 3])   # three requests, spaced 1/3 s apart


# ---- the reward ----------------------------------------------------------------------------------------------------

def _configure_live(server, tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_NCBI_URL", server.url)
    search.configure(backend="ncbi", cache=tmp_path / "cache")
    live = search._backend()
    live.timeout, live.backoff, live.limiter = TIMEOUT, 0.0, RateLimiter(1000.0)   # keep the test fast
    return live


def test_the_reward_scores_live_pubmed(server, tmp_path, monkeypatch):
    server.results["statin"] = ["1", "2", "3"]
    _configure_live(server, tmp_path, monkeypatch)
    assert study_search("<answer>statin</answer>", {"relevant_pmids": ["1", "3", "9", "8"]}) == pytest.approx(0.6)


def test_a_failed_search_scores_0_and_is_warned_once_without_the_key(server, tmp_path, monkeypatch, logs, capsys):
    monkeypatch.setenv("NCBI_API_KEY", KEY)
    _configure_live(server, tmp_path, monkeypatch)
    live = search._backend()
    server.fail(*["429"] * 8, "timeout")
    truth = {"relevant_pmids": ["1"]}
    assert study_search("<answer>heart</answer>", truth) == 0.0
    assert study_search("<answer>stroke</answer>", truth) == 0.0
    live.timeout, live.retries = SHORT_TIMEOUT, 0
    assert study_search("<answer>aspirin</answer>", truth) == 0.0     # a new kind of failure: warned too
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "HTTP 429" in warnings[0] and "scored 0" in warnings[0] and "api_key=***" in warnings[0]
    assert "timeout" in warnings[1]
    captured = capsys.readouterr()
    assert KEY not in logs.text() + captured.out + captured.err
    assert not live.cache.get(live.cache_key("heart"))


def test_the_key_is_in_no_error_repr_or_traceback(server, tmp_path, monkeypatch):
    monkeypatch.setenv("NCBI_API_KEY", KEY)
    found = backend(server, tmp_path, retries=1)
    server.fail("429", "500")
    with pytest.raises(NCBIUnavailable) as caught:
        found.search("heart")
    error = caught.value
    shown = str(error) + repr(error) + repr(found) + "".join(traceback.format_exception(error))
    assert KEY not in shown
    assert "api_key=***" in str(error) and "api_key=set" in repr(found)
    assert error.__context__ is None and error.__cause__ is None   # no urllib error (URL, body) rides along


def test_the_reward_harness_probes_meet_live_pubmed(server, tmp_path, monkeypatch):
    # run_probes sets up a throwaway index; here the probes go to the ncbi backend on the local server instead
    _configure_live(server, tmp_path, monkeypatch)
    monkeypatch.setattr(harness, "probe_index", contextlib.nullcontext)
    monkeypatch.setattr(harness, "TIME_LIMIT", 30.0)   # finite, no exception, deterministic: speed is not the point
    checks = harness.run_probes("study_search")
    failures = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    assert not failures, failures
    assert any(c.name == "unicode junk / pmids" for c in checks)
    sent = {r["term"] for r in server.requests}
    assert "200" in sent and "heart" not in sent and len(sent) == len(server.requests)   # each query sent once


def test_backend_failure_pickles():
    import pickle

    error = pickle.loads(pickle.dumps(NCBIUnavailable("timeout", "no answer")))
    assert (error.kind, str(error)) == ("timeout", "no answer")


# ---- rate limit ----------------------------------------------------------------------------------------------------

def test_the_limiter_spaces_requests_by_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(3, clock, clock.sleep)
    waits = [limiter.wait() for _ in range(4)]
    assert waits == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3])
    assert clock.now - 100.0 == pytest.approx(1.0)        # 4 requests take 1 s: 3 per second
    clock.now += 10                                        # idle time is not saved up for a burst
    assert [limiter.wait(), limiter.wait()] == pytest.approx([0, 1 / 3])


@pytest.mark.parametrize("shared", [False, True])
def test_threads_queue_on_one_limiter(tmp_path, shared):
    clock = FakeClock()
    nap = lambda seconds: None  # noqa: E731  nobody sleeps: the reserved waits are the point
    limiter = SharedRateLimiter(tmp_path / "limit.db", 10, clock, nap) if shared else RateLimiter(10, clock, nap)
    waits, start = [], threading.Barrier(5)

    def request():
        start.wait()
        waits.append(limiter.wait())

    threads = [threading.Thread(target=request) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])


def test_the_rate_is_3_per_second_without_a_key_and_10_with_one(tmp_path, monkeypatch):
    assert (ncbi.RATE_WITHOUT_KEY, ncbi.RATE_WITH_KEY, ncbi.RATE) == (3, 10, 3)
    without = NCBISearch(cache=tmp_path)
    assert isinstance(without.limiter, SharedRateLimiter)
    assert without.limiter.interval == pytest.approx(1 / 3)
    assert without.limiter.path == tmp_path / "ratelimit.sqlite3"       # shared with every process on the folder
    assert NCBISearch(cache=tmp_path).limiter is without.limiter         # one limiter for the process
    monkeypatch.setenv("NCBI_API_KEY", KEY)
    assert NCBISearch(cache=tmp_path).limiter.interval == pytest.approx(1 / 10)


def test_two_processes_on_one_file_take_slots_a_rate_apart(tmp_path):
    clock = FakeClock()
    clock.now = 1_700_000_000.0          # the wall clock: processes agree on time.time()
    nap = lambda seconds: None  # noqa: E731
    first, second = (SharedRateLimiter(tmp_path / "limit.db", 3, clock, nap) for _ in range(2))  # two "processes"
    waits = [limiter.wait() for limiter in (first, second, first, second)]
    assert waits == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert [first.last_slot, second.last_slot] == pytest.approx([clock.now + 2 / 3, clock.now + 1])
    clock.now += 10                      # idle time is not saved up for a burst
    assert [second.wait(), first.wait()] == pytest.approx([0, 1 / 3])
    other = SharedRateLimiter(tmp_path / "limit.db", 10, clock, nap)   # another rate (an API key) has its own slots
    assert other.wait() == 0
    assert first.fallback is None and second.fallback is None


def test_a_wall_clock_that_went_back_does_not_stall_the_limiter(tmp_path):
    clock = FakeClock()
    limiter = SharedRateLimiter(tmp_path / "limit.db", 3, clock, clock.sleep)
    limiter.wait()
    clock.now -= 3600                    # the clock was set back an hour: the stored slot is far ahead
    assert limiter.wait() == 0


def test_a_limiter_file_that_cannot_be_used_falls_back_to_the_process(tmp_path, logs):
    (tmp_path / "file").write_text("not a folder")
    clock = FakeClock()
    limiter = SharedRateLimiter(tmp_path / "file" / "limit.db", 3, clock, clock.sleep)
    waits = [limiter.wait() for _ in range(3)]
    assert waits == pytest.approx([0, 1 / 3, 1 / 3])    # still 3 per second, in this process
    assert limiter.fallback is not None
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "keeps to 3 requests/s on its own" in warnings[0]


_LIMITED = """
import sys, time
from pathlib import Path
from posttrain.rewards.search.ncbi import SharedRateLimiter
path, rate, me, n = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
limiter = SharedRateLimiter(path, rate)
(path.parent / f"ready-{me}").touch()
deadline = time.time() + 30
while len(list(path.parent.glob("ready-*"))) < 2 and time.time() < deadline:   # start together
    time.sleep(0.001)
for _ in range(n):
    limiter.wait()
    print(me, limiter.last_slot, time.time(), flush=True)
print("fallback" if limiter.fallback else "shared", flush=True)
"""


def test_processes_share_the_limit_through_the_file(tmp_path):
    rate, each = 50.0, 3
    path = tmp_path / "ratelimit.sqlite3"
    workers = [subprocess.Popen([sys.executable, "-c", _LIMITED, str(path), str(rate), str(i), str(each)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [worker.communicate(timeout=60) for worker in workers]
    slots = []
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
        *lines, mode = out.split("\n")[:-1]
        assert mode == "shared", err
        for line in lines:
            _, slot, woke = line.split()
            assert float(woke) >= float(slot) - 0.002      # each slept until its slot
            slots.append(float(slot))
    slots.sort()
    assert len(slots) == 2 * each
    gaps = [b - a for a, b in zip(slots, slots[1:])]
    assert min(gaps) >= 1 / rate - 1e-6, gaps               # both processes together: at most 50 per second
    assert slots[-1] - slots[0] < 2.0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT next FROM slots").fetchone()[0] == pytest.approx(slots[-1] + 1 / rate)


# ---- threads -------------------------------------------------------------------------------------------------------

def test_threads_asking_the_same_query_send_it_once(server, tmp_path):
    server.delay = 0.1    # the first asker is still waiting when the others ask; the timeout is far longer
    found = backend(server, tmp_path)
    queries = ["heart"] * 6 + ["stroke"] * 2 + ["aspirin"]
    results: dict[int, list[str]] = {}
    start = threading.Barrier(len(queries))

    def run(i):
        start.wait()
        results[i] = found.search(queries[i], 5)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[i] == server.pmids(q)[:5] for i, q in enumerate(queries))
    assert sorted(r["term"] for r in server.requests) == ["aspirin", "heart", "stroke"]
    assert not found._inflight


# ---- choosing the backend ------------------------------------------------------------------------------------------

def test_the_environment_chooses_the_live_backend(server, tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_SEARCH_BACKEND", "ncbi")
    monkeypatch.setenv("POSTTRAIN_SEARCH_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setenv("POSTTRAIN_NCBI_URL", server.url)
    search.configure(None)
    assert search.search("heart", 2) == server.pmids("heart")[:2]
    assert (tmp_path / "env-cache" / "esearch.sqlite3").exists()
    assert search._backend() is search._backend()            # one backend object per process
    search.configure(backend="index")                         # and configure overrides the environment
    with pytest.raises(ConfigError, match="search needs a backend"):
        search.search("heart")


def test_an_index_given_to_configure_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_SEARCH_BACKEND", "ncbi")
    search.configure(index=tmp_path / "missing.db")
    with pytest.raises(PosttrainError, match="no such search index"):
        search.search("heart")


def test_unknown_backends_and_the_unconfigured_message(monkeypatch):
    with pytest.raises(ConfigError, match="expected one of index, ncbi"):
        search.configure(backend="pubmed")
    monkeypatch.setenv("POSTTRAIN_SEARCH_BACKEND", "google")
    search.configure(None)
    with pytest.raises(ConfigError, match="POSTTRAIN_SEARCH_BACKEND='google'"):
        search.search("heart")
    monkeypatch.delenv("POSTTRAIN_SEARCH_BACKEND")
    with pytest.raises(ConfigError) as caught:
        search.search("heart")
    assert "POSTTRAIN_SEARCH_INDEX" in str(caught.value) and "POSTTRAIN_SEARCH_BACKEND=ncbi" in str(caught.value)


# ---- CLI -----------------------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_queries_live_pubmed(server, tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_NCBI_URL", server.url)
    server.results["statin AND trial"] = ["111", "222", "333"]
    args = ["search", "query", "--ncbi", "statin AND trial", "--cache", str(tmp_path / "c"), "--top", "2"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "PubMed: 3 hits" in first.stdout and "from cache" not in first.stdout
    assert "111" in first.stdout and "222" in first.stdout and "333" not in first.stdout
    again = runner.invoke(app, args)
    assert "(from cache)" in again.stdout and len(server.requests) == 1


def test_cli_live_failure_is_one_message_without_the_key(server, tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_NCBI_URL", server.url)
    monkeypatch.setenv("NCBI_API_KEY", KEY)
    server.fail("400")
    result = runner.invoke(app, ["search", "query", "--ncbi", "heart", "--cache", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "PubMed esearch failed" in result.output and KEY not in result.output
    assert "Traceback" not in result.output


def test_cli_index_usage_is_unchanged(tmp_path):
    from posttrain.rewards.search.index import build_index

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"pmid": "7", "title": "Statin trial", "abstract": "heart"}) + "\n")
    build_index(corpus, tmp_path / "i.db", progress=False)
    result = runner.invoke(app, ["search", "query", str(tmp_path / "i.db"), "statin"])
    assert result.exit_code == 0, result.output
    assert "1 hits" in result.stdout and "Statin trial" in result.stdout
    missing = runner.invoke(app, ["search", "query", str(tmp_path / "i.db")])
    assert missing.exit_code == 2 and "--ncbi" in missing.output
    both = runner.invoke(app, ["search", "query", "--ncbi", str(tmp_path / "i.db"), "statin"])
    assert both.exit_code == 2 and "no INDEX" in both.output
