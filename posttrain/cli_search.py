"""`posttrain search ...`: build the offline study-search index and try queries on it by hand."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from posttrain.cli_common import user_errors

search_app = typer.Typer(help="Build and query the offline PubMed-style study-search index.", no_args_is_help=True)


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
    index: str = typer.Argument(..., help="An index built with build-index."),
    text: str = typer.Argument(..., help='A PubMed Boolean query, e.g. "(heart failure[tiab]) AND trial*"'),
    top: int = typer.Option(10, "--top", help="How many hits to show."),
):
    """Show the FTS5 translation of a query and its top hits."""
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
