"""Text analysis: how Chinese and English text becomes index terms, and how hits are marked.

**Tokenizer** (:func:`text_analyzer`, registered in the index as :data:`ANALYZER_NAME`): every
Han character is one token (a character *unigram*, as Lucene's standard analyzer does for
CJK) and every run of other letters or digits is a word, lower-cased and reduced by the
English Snowball stemmer ("Running", "runs" → "run"). A Chinese query such as ``微服务``
yields consecutive unigrams, which the query parser turns into a **phrase** query: it
matches exactly the documents containing that string, whatever a dictionary thinks the
words are. ``docs/search.md`` compares this with ``rjieba`` dictionary segmentation
(``python -m bench.search``): jieba's context-dependent cuts lost documents that contain the
query string and indexed slower, for a smaller index; we chose recall and predictability.

**Plain text** (:func:`html_to_text`): article content is sanitised HTML; tags go, the
bodies of ``script``/``style`` go, entities are decoded, block elements become spaces.

**Highlights** (:func:`highlight`): tantivy reports matched byte ranges of a fragment; we
merge adjacent ranges (a phrase of unigrams is one highlight) and build escaped HTML with
``<em>`` around them, so a snippet is safe to insert into a page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Final

import tantivy

ANALYZER_NAME: Final = "webook_cjk_en"
# One Han character, or a run of letters/digits of any script (Latin, Cyrillic, kana, ...).
TOKEN_PATTERN: Final = r"\p{Han}|[\p{L}\p{N}--\p{Han}]+"
# Longer "words" are base64 blobs, hashes or URLs run together: not worth an index term.
MAX_TOKEN_CHARS: Final = 40

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
