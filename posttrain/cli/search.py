"""`posttrain search ...`: build the offline study-search index and try queries on it, or on live PubMed, by hand."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from posttrain.cli.common import user_errors

search_app = typer.Typer(help="Build and query the offline PubMed-style study-search index, or query live PubMed.",
                         no_args_is_help=True)


@search_app.command("build-index")
@user_errors
def build_index(
    corpus: str = typer.Argument(..., help="Records with pmid, title, abstract[, mesh, keywords] (.jsonl/.json/.parquet)."),
    index: str = typer.Argument(..., help="The SQLite file to write."),
):
    """Index a PubMed-style corpus into an SQLite FTS5 file."""
    from posttrain.rewards.search.index import build_index as build

    count = build(corpus, index)
    Console().print(f"indexed {count} documents into {index}", highlight=False)


@search_app.command("query")
@user_errors
def query(
    index: Optional[str] = typer.Argument(None, metavar="INDEX",
                                          help="An index built with build-index (none with --ncbi)."),
    text: Optional[str] = typer.Argument(None, metavar="TEXT",
                                         help='A PubMed Boolean query, e.g. "(heart failure\\[tiab]) AND trial*"'),
    ncbi: bool = typer.Option(False, "--ncbi", help="Search live PubMed (NCBI esearch, cached) instead of an index."),
    cache: Optional[str] = typer.Option(None, "--cache", help="The --ncbi answer cache folder (default "
                                        "$POSTTRAIN_SEARCH_CACHE, $POSTTRAIN_CACHE/ncbi or ~/.cache/posttrain/ncbi)."),
    top: int = typer.Option(10, "--top", help="How many hits to show."),
):
    """Show a query's top hits: on an index (with its FTS5 translation) or, with --ncbi, on live PubMed."""
    from posttrain.errors import PosttrainError

    if ncbi and text is not None:
        raise PosttrainError("--ncbi searches live PubMed: give the query only, no INDEX")
    if ncbi:
        return _query_ncbi(index, cache, top)
    if index is None or text is None:
        raise PosttrainError("give INDEX and TEXT, or --ncbi TEXT to search live PubMed")
    _query_index(index, text, top)


def _query_index(index: str, text: str, top: int) -> None:
    from posttrain.errors import PosttrainError
    from posttrain.rewards.search.index import SearchIndex
    from posttrain.rewards.search.query import QueryError, to_fts

    try:
        expression = to_fts(text)
        pmids = SearchIndex(index).search(text, 1000)
    except QueryError as e:
        raise PosttrainError(f"query: {e} (a study-search reward scores this 0)") from None
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"FTS5: {expression}")
    out.print(f"{len(pmids)} hits (at most 1000)")
    db = SearchIndex(index).db
    table = Table()
    table.add_column("rank")
    table.add_column("pmid")
    table.add_column("title", overflow="fold")
    for rank, pmid in enumerate(pmids[:top], 1):
        title = db.execute("SELECT title FROM docs WHERE pmid = ?", (pmid,)).fetchone()
        table.add_row(str(rank), pmid, title[0] if title else "")
    out.print(table)


def _query_ncbi(text: str | None, cache: str | None, top: int) -> None:
    from posttrain.errors import PosttrainError
    from posttrain.rewards.search.ncbi import RETMAX, NCBISearch
    from posttrain.rewards.search.query import QueryError

    try:
        hits = NCBISearch(cache=cache).esearch(text or "")
    except QueryError as e:
        raise PosttrainError(f"query: {e} (a study-search reward scores this 0)") from None
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"PubMed: {hits.count} hits, the first {len(hits.pmids)} kept (at most {RETMAX})"
              + (" (from cache)" if hits.cached else ""))
    table = Table()
    table.add_column("rank")
    table.add_column("pmid")
    for rank, pmid in enumerate(hits.pmids[:top], 1):
        table.add_row(str(rank), pmid)
    out.print(table)
