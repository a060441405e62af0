"""Translate a PubMed Boolean query into an SQLite FTS5 match expression.

Supported: AND, OR, NOT (upper case, as PubMed), parentheses, quoted
phrases, trailing-`*` truncation, and field tags [tiab], [ti], [ab],
[mh]/[MeSH Terms]/[majr], [tw]; any other tag searches every field.
Adjacent words without an operator are ANDed (as PubMed does), and a tag
applies to the words or group just before it. Anything that cannot be
translated raises QueryError, which the reward scores as 0.
"""

from __future__ import annotations

import re

FIELDS = {
    "tiab": "title abstract", "ti": "title", "ab": "abstract", "mh": "mesh", "mesh": "mesh", "mesh terms": "mesh",
    "majr": "mesh", "mesh major topic": "mesh", "tw": "title abstract mesh keywords", "text word": "title abstract mesh keywords",
}
_TOKEN = re.compile(r'\s*(?:(\()|(\))|"([^"]*)"|\[([^\]]*)\]|([^\s()"\[\]]+))')
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_LENGTH = 20_000  # characters; longer answers are not queries


class QueryError(ValueError):
    pass


def tokenize(query: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None or match.end() == pos:
            if query[pos:].strip():
                raise QueryError(f"cannot read the query at {query[pos:pos + 20]!r}")
            break
        pos = match.end()
        open_, close, phrase, tag, word = match.groups()
        if open_:
            tokens.append(("(", "("))
        elif close:
            tokens.append((")", ")"))
        elif phrase is not None:
            tokens.append(("phrase", phrase))
        elif tag is not None:
            tokens.append(("tag", tag.strip().lower()))
        elif word in ("AND", "OR", "NOT"):
            tokens.append((word, word))
        else:
            tokens.append(("word", word))
    return tokens


def to_fts(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise QueryError("empty query")
    if len(query) > MAX_LENGTH:
        raise QueryError("query too long")
    parser = _Parser(tokenize(query))
    expression = parser.expression()
    if parser.pos != len(parser.tokens):
        raise QueryError(f"unexpected {parser.tokens[parser.pos][1]!r}")
    return expression


class _Parser:
    def __init__(self, tokens):
        self.tokens, self.pos, self.depth = tokens, 0, 0

    def peek(self):
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self):
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expression(self) -> str:  # OR binds loosest
        parts = [self.conjunction()]
        while self.peek() == "OR":
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def conjunction(self) -> str:  # flat, so long queries stay within FTS5's expression depth
        parts = [self.negation()]
        while self.peek() in ("AND", "(", "word", "phrase"):
            if self.peek() == "AND":
                self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def negation(self) -> str:
        result = self.primary()
        while self.peek() == "NOT":
            self.take()
            result = f"({result} NOT {self.primary()})"
        return result

    def primary(self) -> str:
        kind = self.peek()
        if kind == "(":
            self.take()
            self.depth += 1
            if self.depth > 100:
                raise QueryError("parentheses nested too deep")
            inner = self.expression()
            if self.peek() != ")":
                raise QueryError("unbalanced parentheses")
            self.take()
            self.depth -= 1
            return self._tagged(f"({inner})")
        if kind in ("word", "phrase"):
            terms = []
            while self.peek() in ("word", "phrase"):
                terms.extend(_terms(*self.take()))
            if not terms:
                raise QueryError("a term with no letters or digits")
            group = terms[0] if len(terms) == 1 else "(" + " AND ".join(terms) + ")"
            return self._tagged(group)
        raise QueryError(f"expected a term, got {self.tokens[self.pos][1] if kind else 'the end'}")

    def _tagged(self, group: str) -> str:
        if self.peek() != "tag":
            return group
        columns = FIELDS.get(self.take()[1])
        return f"{{{columns}}} : {group}" if columns else group


def _terms(kind: str, text: str) -> list[str]:
    if kind == "phrase":
        words = _WORD.findall(text)
        return ['"' + " ".join(words) + '"'] if words else []
    prefix = text.endswith("*")
    words = _WORD.findall(text)
    if not words:
        return []
    if len(words) > 1:  # COVID-19, 5-year: a phrase of its parts
        return ['"' + " ".join(words) + '"' + ("*" if prefix else "")]
    return [f'"{words[0]}"' + ("*" if prefix else "")]
