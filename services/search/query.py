"""The search query language: what a user's text means, as index terms, never engine syntax.

A user's text never reaches tantivy's query parser. It is read here, by these rules only:

- **words** (separated by whitespace) must all match, each in any searched field;
- **"quoted phrases"** must match as written (their words adjacent and in order); a phrase
  holding Chinese text requires each of its Chinese n-grams and each run of other words as
  a phrase (n-grams carry no positions, see :mod:`services.search.analysis`);
- everything else is **just text**: ``title:*`` searches for the word "title", ``live:false``
  for the phrase "live false", ``don't`` for the phrase "don t" (as the text was indexed),
  ``a OR -b`` for the words "a", "or" and "b"; an unpaired ``"`` is ignored.

A word that the analyzer splits into several terms (``don't``, ``e-mail``, ``a:1``) is one
phrase, as in the indexed text. A run of Chinese characters is one term up to
:data:`~services.search.analysis.MAX_GRAM` characters, else its overlapping n-grams, all
required. Punctuation alone analyses to nothing: a query without any term matches nothing.

:func:`analyse_query` turns the text into :class:`AnalysedQuery` (clauses of terms, plus the
stored fields' terms for highlighting), refusing more than :data:`MAX_QUERY_TERMS` terms;
:mod:`services.search.index` builds the engine query from it with term, phrase and boolean
query objects, and adds the visibility filter the user's text cannot touch.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Final

import tantivy

from services.search.analysis import MAX_GRAM, han_runs, search_analyzer, text_analyzer
from services.search.errors import Reason, SearchInvalidArgument

# Terms of one query at most (words, phrase words and Chinese n-grams together): every term
# is looked up in every searched field, so this bounds a query's cost. 64 is ~30 English
# words or a run of 67 Chinese characters.
MAX_QUERY_TERMS: Final = 64

_PHRASE: Final = re.compile(r'"([^"]*)"')


@dataclass(frozen=True, slots=True)
class Clause:
    """One required part of a query: a term (one element) or a phrase of the searched
    fields' terms, matched in order and adjacent."""

    terms: tuple[str, ...]

    @property
    def is_phrase(self) -> bool:
        """Whether the terms must be adjacent and in order."""
        return len(self.terms) > 1


@dataclass(frozen=True, slots=True)
class AnalysedQuery:
    """A user's query as index terms: every clause must match (each in any searched field).

    ``highlight_terms`` are the terms of the stored fields (Chinese as single characters)
    that snippets mark.
    """

    clauses: tuple[Clause, ...]
    highlight_terms: tuple[str, ...]

    @property
    def term_count(self) -> int:
        """Terms looked up per searched field."""
        return sum(len(clause.terms) for clause in self.clauses)


class _Analyzers(threading.local):
    # Searches run in worker threads: each thread gets its own analyzer objects.
    def __init__(self) -> None:
        self.search = search_analyzer()
        self.text = text_analyzer()


_ANALYZERS: Final = _Analyzers()


def _segment_clauses(segment: str) -> list[Clause]:
    """Clauses of one word or one phrase's content: Chinese runs as n-gram terms, each run
    of other text as one term or one phrase."""
    clauses: list[Clause] = []
    position = 0
    for start, end in [*han_runs(segment), (len(segment), len(segment))]:
        other = _ANALYZERS.search.analyze(segment[position:start])
        if other:
            clauses.append(Clause(tuple(other)))
        run = segment[start:end]
        if len(run) <= MAX_GRAM:
            grams = [run] if run else []
        else:
            grams = [run[i : i + MAX_GRAM] for i in range(len(run) - MAX_GRAM + 1)]
        clauses.extend(Clause((gram,)) for gram in grams)
        position = end
    return clauses


def _unique(clauses: list[Clause]) -> tuple[Clause, ...]:
    # A repeated word asks for nothing more ("go go go"): keep the first.
    return tuple(dict.fromkeys(clauses))


def analyse_query(text: str) -> AnalysedQuery:
    """``text`` (already checked by :func:`~services.search.domain.parse_request`) read by
    the rules of this module.

    Raises :class:`SearchInvalidArgument` (``SEARCH_INVALID_QUERY``) beyond
    :data:`MAX_QUERY_TERMS` terms.
    """
    clauses: list[Clause] = []
    words: list[str] = []
    position = 0
    for match in _PHRASE.finditer(text):
        words.extend(text[position : match.start()].split())
        clauses.extend(_segment_clauses(match.group(1)))
        position = match.end()
    # An unpaired quote is only punctuation: the analyzer drops it with the rest.
    words.extend(text[position:].split())
    for word in words:
        clauses.extend(_segment_clauses(word))
    # Counted as typed, repeats included: the limit is about the text, not its cost alone.
    count = sum(len(clause.terms) for clause in clauses)
    if count > MAX_QUERY_TERMS:
        raise SearchInvalidArgument(
            Reason.INVALID_QUERY,
            f"the search query has too many terms ({count}, at most {MAX_QUERY_TERMS}); "
            "use fewer words or a shorter Chinese phrase",
            metadata={"field": "query", "max_terms": str(MAX_QUERY_TERMS)},
        )
    return AnalysedQuery(
        clauses=_unique(clauses),
        highlight_terms=tuple(dict.fromkeys(_ANALYZERS.text.analyze(text))),
    )


def clause_query(schema: tantivy.Schema, clause: Clause, fields: dict[str, float]) -> tantivy.Query:
    """``clause`` matched in any of ``fields`` (name → boost), the best field scoring."""
    per_field: list[tuple[tantivy.Occur, tantivy.Query]] = []
    for field, boost in fields.items():
        if clause.is_phrase:
            query = tantivy.Query.phrase_query(schema, field, list(clause.terms))
        else:
            query = tantivy.Query.term_query(schema, field, clause.terms[0], index_option="freq")
        if boost != 1.0:
            query = tantivy.Query.boost_query(query, boost)
        per_field.append((tantivy.Occur.Should, query))
    return tantivy.Query.boolean_query(per_field)
