"""Text analysis: how Chinese and English text becomes index terms, and how hits are marked.

Every text field is indexed twice (see :mod:`services.search.index`):

- **Searched fields** (``title_s``, ...; :func:`search_analyzer`): every run of Han
  characters is replaced by all its substrings of 1 to :data:`MAX_GRAM` characters
  (:func:`search_text`), and every run of other letters or digits is a word, lower-cased and
  reduced by the English Snowball stemmer ("Running", "runs" → "run"). A Chinese query of up
  to four characters (微服务, 限流算法) is then **one term** — exactly the documents
  containing that string, found by a term lookup the engine can prune top-k over; a longer
  one becomes its overlapping 4-grams, all required (:mod:`services.search.query`).
- **Stored fields** (``title``, ...; :func:`text_analyzer`): Han characters as unigrams
  (as Lucene's standard analyzer does for CJK), English as above. They hold the text shown
  in results and drive the highlighting, so every matched character is marked.

``docs/search.md`` records the measurement behind this (``python -m bench.search``, 20k
documents, 12 Chinese queries): unigrams with phrase queries find exactly the documents
containing the query (recall 1.000, precision 0.997: a phrase also matches across
punctuation) but a phrase must check positions in every candidate (p50 1.29 ms per query,
growing with the corpus); ``rjieba`` dictionary words (``cut_for_search``/``cut``) are
small and fast (0.12 ms) but context-dependent cuts lose documents (recall 0.997) and
ANDed words match non-adjacent text (precision 0.867); n-grams keep recall and precision at
1.000 with the fastest queries (0.07 ms), for a larger index and slower indexing.

**Plain text** (:func:`html_to_text`): article content is sanitised HTML; tags go, the
bodies of ``script``/``style`` go, entities are decoded, block elements become spaces.

**Highlights** (:func:`highlight`): tantivy reports matched byte ranges of a fragment; we
merge adjacent ranges (a phrase of unigrams is one highlight) and build escaped HTML with
``<em>`` around them, so a snippet is safe to insert into a page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Final

import tantivy

ANALYZER_NAME: Final = "webook_cjk_en"
# One Han character, or a run of letters/digits of any script (Latin, Cyrillic, kana, ...).
TOKEN_PATTERN: Final = r"\p{Han}|[\p{L}\p{N}--\p{Han}]+"
# Longer "words" are base64 blobs, hashes or URLs run together: not worth an index term.
MAX_TOKEN_CHARS: Final = 40

SEARCH_ANALYZER_NAME: Final = "webook_cjk_grams"
# A run of Han characters (one n-gram, see search_text), or a run of other letters/digits.
SEARCH_TOKEN_PATTERN: Final = r"\p{Han}+|[\p{L}\p{N}--\p{Han}]+"
# Han character n-grams from 1 to MAX_GRAM characters are index terms.
MAX_GRAM: Final = 4
# Python's re has no \p{Han}: the blocks of Unicode's Han script.
_HAN: Final = (
    "\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\U00020000-\U0003134f"
)
_HAN_RUN: Final = re.compile(f"[{_HAN}]+")
_HAN_PHRASE: Final = re.compile(r'"([^"]*)"')

_BLOCKS: Final = frozenset(
    "address article aside blockquote br dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 "
    "h6 header hr li main nav ol p pre section table td th tr ul".split()
)
_SKIPPED: Final = frozenset({"script", "style", "template", "noscript"})


def text_analyzer() -> tantivy.TextAnalyzer:
    """The analyzer of every searchable text field (and of queries on them)."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(TOKEN_PATTERN))
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_CHARS))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def search_analyzer() -> tantivy.TextAnalyzer:
    """The analyzer of the searched ``*_s`` fields, whose Han text is pre-cut into n-grams
    by :func:`search_text` (and queries by :func:`search_query`)."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(SEARCH_TOKEN_PATTERN))
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_CHARS))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def han_grams(run: str) -> list[str]:
    """Every substring of ``run`` of 1..:data:`MAX_GRAM` characters, by start position."""
    return [
        run[start : start + size]
        for start in range(len(run))
        for size in range(1, MAX_GRAM + 1)
        if start + size <= len(run)
    ]


def han_runs(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` spans of the runs of Han characters in ``text``, in order."""
    return [match.span() for match in _HAN_RUN.finditer(text)]


def search_text(text: str) -> str:
    """``text`` as indexed in the searched fields: each Han run replaced by its n-grams.

    So a Chinese query of up to :data:`MAX_GRAM` characters (微服务, 限流算法) is **one term**:
    a lookup that the engine's top-k pruning handles, where a phrase of unigrams has to
    check the positions of every candidate document.
    """
    return _HAN_RUN.sub(lambda m: " " + " ".join(han_grams(m.group())) + " ", text)


def search_query(query: str) -> str:
    """``query`` rewritten for the searched fields in tantivy's query syntax.

    For the benchmarks and the Elasticsearch adapter's ``query_string`` only: the service
    never parses a user's text as query syntax (:mod:`services.search.query`).

    - a Han run of up to :data:`MAX_GRAM` characters stays one term; a longer one becomes
      its overlapping :data:`MAX_GRAM`-grams, all required (``(限流算法 流算法实 算法实现)``);
    - a quoted phrase containing Han loses its quotes (n-grams have no phrase positions;
      requiring every gram keeps it nearly as exact);
    - a Han run is separated from letters or digits glued to it (``微服务grpc``);
    - ``title:`` and the other field names become the searched fields' names.
    """

    def unquote(match: re.Match[str]) -> str:
        inner = match.group(1)
        return inner if _HAN_RUN.search(inner) else match.group(0)

    text = _HAN_PHRASE.sub(unquote, query)

    def grams(match: re.Match[str]) -> str:
        run, (start, end) = match.group(), match.span()
        if len(run) <= MAX_GRAM:
            body = run
        else:
            pieces = (run[i : i + MAX_GRAM] for i in range(len(run) - MAX_GRAM + 1))
            body = "(" + " ".join(pieces) + ")"
        before = " " if start > 0 and text[start - 1].isalnum() else ""
        after = " " if end < len(text) and text[end].isalnum() else ""
        return before + body + after

    return _FIELD_PREFIX.sub(lambda m: m.group(1) + SEARCH_SUFFIX + ":", _HAN_RUN.sub(grams, text))


SEARCH_SUFFIX: Final = "_s"
_FIELD_PREFIX: Final = re.compile(r"(?<![\w.])(title|body|author|nickname|about):")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag in _BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(content: str) -> str:
    """The readable text of an HTML fragment, whitespace collapsed."""
    if "<" not in content and "&" not in content:
        return " ".join(content.split())
    extractor = _TextExtractor()
    extractor.feed(content)
    extractor.close()
    return " ".join("".join(extractor.parts).split())


def _merged(ranges: Iterable[tuple[int, int]], text: bytes) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        # Ranges separated only by spaces belong to one matched phrase ("token bucket").
        if merged and not text[merged[-1][1] : start].strip():
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(fragment: str, byte_ranges: Iterable[tuple[int, int]]) -> str:
    """``fragment`` as escaped HTML with ``<em>`` around the (UTF-8 byte) ranges."""
    raw = fragment.encode("utf-8")
    out: list[str] = []
    position = 0
    for start, end in _merged(byte_ranges, raw):
        if start < position or end > len(raw):
            continue
        out.append(html.escape(raw[position:start].decode("utf-8", "replace")))
        out.append("<em>" + html.escape(raw[start:end].decode("utf-8", "replace")) + "</em>")
        position = end
    out.append(html.escape(raw[position:].decode("utf-8", "replace")))
    return "".join(out)


def excerpt(text: str, max_chars: int) -> str:
    """The first ``max_chars`` characters of ``text`` as escaped HTML (no match to show)."""
    cut = text[:max_chars]
    return html.escape(cut + ("…" if len(text) > max_chars else ""))
