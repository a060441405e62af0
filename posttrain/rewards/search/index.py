"""The embedded study-search backend: an SQLite FTS5 index of a PubMed-style corpus.

Built once from records with `pmid`, `title`, `abstract` and optional `mesh`
and `keywords` (jsonl, json or parquet); queried with PubMed Boolean syntax
translated by `query.py`; ranked by bm25 (ties by insertion order, so results
are deterministic). No network, same answer every time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from posttrain.data.fingerprint import file_fingerprint
from posttrain.data.io import atomic_path, read_rows
from posttrain.errors import DataError, PosttrainError
from posttrain.rewards.search.query import QueryError, to_fts

SCHEMA = ("CREATE VIRTUAL TABLE docs USING fts5(pmid UNINDEXED, title, abstract, mesh, keywords, "
          "tokenize='unicode61 remove_diacritics 2', prefix='2 3 4')")
_BATCH = 2000


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ; ".join(str(v) for v in value if v is not None)
    return str(value)


def build_index(corpus: str | Path, index: str | Path, *, progress: bool = True) -> int:
    """Index every record of `corpus` into a new SQLite file `index` (atomically); return how many."""
    from tqdm import tqdm

    count = 0
    with atomic_path(index) as tmp:
        tmp.unlink(missing_ok=True)
        db = sqlite3.connect(tmp)
        try:
            db.execute(SCHEMA)
            rows = []
            for line, row in tqdm(read_rows(corpus), desc="Indexing", unit=" docs", disable=not progress):
                if not isinstance(row, dict) or not str(row.get("pmid") or "").strip():
                    raise DataError(corpus, line, "pmid", "missing; expected the article's PubMed id")
                if not isinstance(row.get("title", ""), str) or not isinstance(row.get("abstract", ""), str):
                    raise DataError(corpus, line, "title/abstract", "expected strings")
                rows.append((str(row["pmid"]).strip(), _text(row.get("title")), _text(row.get("abstract")),
                             _text(row.get("mesh")), _text(row.get("keywords"))))
                if len(rows) >= _BATCH:
                    db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?)", rows)
                    count += len(rows)
                    rows.clear()
            db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?)", rows)
            count += len(rows)
            db.execute("INSERT INTO docs(docs) VALUES ('optimize')")
            db.commit()
        finally:
            db.close()
    return count


class SearchIndex:
    def __init__(self, path: str | Path):
        self.path = str(path)
        if not Path(self.path).exists():
            raise PosttrainError(f"{self.path}: no such search index; build it with `posttrain search build-index`")
        self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def search(self, query: str, limit: int = 1000) -> list[str]:
        """PMIDs matching a PubMed Boolean query, best first; QueryError if it cannot be run."""
        expression = to_fts(query)
        try:
            rows = self.db.execute("SELECT pmid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs), rowid LIMIT ?",
                                   (expression, int(limit))).fetchall()
        except sqlite3.OperationalError as e:  # e.g. FTS5's own limits
            raise QueryError(str(e)) from None
        return [row[0] for row in rows]


def corpus_index(corpus: str, folder: Path, build: bool = True) -> str:
    """The FTS5 index of `corpus` in `folder`, built (unless `build` is false, or one of the same content is
    there already)."""
    if not Path(corpus).is_file():
        raise PosttrainError(f"search_corpus: {corpus}: no such file")
    index = Path(folder) / f"search_index-{file_fingerprint(corpus)[:16]}.db"
    if build and not index.exists():
        build_index(corpus, index)
    return str(index)
