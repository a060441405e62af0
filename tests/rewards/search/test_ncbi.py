"""The live PubMed backend against a local esearch server: what is sent, cache, retries, rate limit, key hygiene.

Nothing here reaches the network: every backend points at a server on
127.0.0.1 started by the test, and the real NCBI URL is replaced by a dead
local port for the whole module.
"""

from __future__ import annotations

import json
import logging
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
from posttrain.rewards import search
from posttrain.rewards.clinical import study_search
from posttrain.rewards.search import ncbi
from posttrain.rewards.search.ncbi import NCBISearch, NCBIUnavailable, RateLimiter
from posttrain.rewards.search.query import QueryError

KEY = "k3y-SECRET-0123456789abcdef"
DEAD_URL = "http://127.0.0.1:9/esearch.fcgi"   # the discard port: nothing answers
TIMEOUT = 0.2                                   # seconds; the server's "timeout" failure sleeps longer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that gave up on a slow answer: not news
        pass


class FakeNCBI:
    """esearch on 127.0.0.1: records each request's parameters and method; `fail` queues failures for the next ones."""

    def __init__(self):
        self.requests: list[dict] = []
        self.failures: list[str] = []     # "500", "429", "400", "timeout", "garbage": one per coming request
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
            return 200, b"{}", TIMEOUT * 3
        if failure in ("500", "400"):
            return int(failure), b"<html>oops</html>", 0
        if failure == "429":  # NCBI's own rate-limit answer echoes the key
            return 429, json.dumps({"error": "API rate limit exceeded", "api-key": params.get("api_key")}).encode(), 0
        if failure == "garbage":
            return 200, b"<html>Service unavailable</html>", 0
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
    monkeypatch.setattr(ncbi, "DEFAULT_URL", DEAD_URL)
    for name in ("NCBI_API_KEY", "POSTTRAIN_NCBI_URL", "POSTTRAIN_SEARCH_BACKEND", "POSTTRAIN_SEARCH_INDEX",
                 "POSTTRAIN_SEARCH_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path / "posttrain-cache"))
    for name in ("no_proxy", "NO_PROXY"):  # a proxy in the environment must not see the local server's traffic
        monkeypatch.setenv(name, "*")
    monkeypatch.setattr(search, "_warned", set())
    yield
    search.configure(None)


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
    done = subprocess.run([sys.executable, "-c", code, DEAD_URL, str(tmp_path / "cache")], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
    assert len(server.requests) == 1


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

@pytest.mark.parametrize("failure", ["500", "429", "timeout", "garbage"])
def test_passing_failures_are_retried_with_backoff(server, tmp_path, failure):
    clock = FakeClock()
    server.fail(failure, failure)
    found = backend(server, tmp_path, backoff=0.5, sleep=clock.sleep)
    assert found.search("heart", 3) == server.pmids("heart")[:3]
    assert len(server.requests) == 3
    assert clock.sleeps == [0.5, 1.0]


@pytest.mark.parametrize("failure, kind", [("500", "HTTP 500"), ("429", "HTTP 429"), ("timeout", "timeout"),
                                           ("garbage", "bad response")])
def test_retries_run_out_with_a_clear_error(server, tmp_path, failure, kind):
    clock = FakeClock()
    server.fail(*[failure] * 4)
    with pytest.raises(NCBIUnavailable, match=rf"PubMed esearch failed after 4 attempt\(s\): {kind}") as caught:
        backend(server, tmp_path, backoff=0.5, sleep=clock.sleep).search("heart")
    assert caught.value.kind == kind
    assert clock.sleeps == [0.5, 1.0, 2.0] and len(server.requests) == 4


def test_a_client_error_is_not_retried(server, tmp_path):
    server.fail("400")
    with pytest.raises(NCBIUnavailable, match="after 1 attempt"):
        backend(server, tmp_path).search("heart")
    assert len(server.requests) == 1


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
    server.fail(*["429"] * 8, *["timeout"] * 4)
    truth = {"relevant_pmids": ["1"]}
    assert study_search("<answer>heart</answer>", truth) == 0.0
    assert study_search("<answer>stroke</answer>", truth) == 0.0
    assert study_search("<answer>aspirin</answer>", truth) == 0.0     # a new kind of failure: warned too
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "HTTP 429" in warnings[0] and "scored 0" in warnings[0] and "api_key=***" in warnings[0]
    assert "timeout" in warnings[1]
    captured = capsys.readouterr()
    assert KEY not in logs.text() + captured.out + captured.err
    assert not search._backend().cache.get(json.dumps(["heart", 1000, "relevance"]))


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


def test_threads_queue_on_one_limiter():
    clock = FakeClock()
    limiter = RateLimiter(10, clock, lambda seconds: None)  # nobody sleeps: the reserved waits are the point
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
    without = NCBISearch(cache=tmp_path)
    assert without.limiter.interval == pytest.approx(1 / 3)
    assert NCBISearch(cache=tmp_path / "b").limiter is without.limiter   # one limiter for the process
    monkeypatch.setenv("NCBI_API_KEY", KEY)
    assert NCBISearch(cache=tmp_path).limiter.interval == pytest.approx(1 / 10)


# ---- threads -------------------------------------------------------------------------------------------------------

def test_threads_asking_the_same_query_send_it_once(server, tmp_path):
    server.delay = 0.1
    found = backend(server, tmp_path)
    queries = ["heart"] * 6 + ["stroke"] * 2 + ["aspirin"]
    results: dict[int, list[str]] = {}

    def run(i):
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
