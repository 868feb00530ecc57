"""Hostile search queries: the query syntax of tantivy and Lucene, field names of our schema,
control characters and sizes at and past the limits, as hand-written cases and generated
ones (seeded, so a failure repeats). Shared by the service's tests and
``tests/e2e/test_search_hostile.py``.
"""

from __future__ import annotations

import random
from typing import Final

# Every field of the index (services.search.index) and a few that exist elsewhere.
FIELDS: Final = (
    "title",
    "body",
    "author",
    "nickname",
    "about",
    "title_s",
    "body_s",
    "key",
    "kind",
    "live",
    "version",
    "doc_id",
    "utime",
    "author_id",
    "status",
    "_id",
)

# Written out: each names what it tried against the old parser.
HOSTILE_QUERIES: Final = (
    "title:*",  # the engine error that tripped the breaker
    "*",
    "live:false",
    "live:true OR live:false",
    "status:3",
    'key:"a:1"',
    "key:a*",
    "kind:1",
    "doc_id:[0 TO 99999999]",
    "utime:>0",
    "title:[a TO z]",
    "title:{a TO z}",
    "body:/.*/",
    "token^100",
    "token~2",
    '"token bucket"~5',
    "title:token AND NOT body:x",
    "+token -bucket",
    "a OR b OR c",
    "(a OR (b AND c)",
    "a)",
    '"unbalanced',
    'un"balanced"phrase"',
    '""',
    "don't",
    "it's O'Reilly's",
    "AND",
    "OR OR OR",
    "NOT",
    "\\",
    "\\*",
    "title:\\*",
    ":",
    ":::",
    "a:b:c:d",
    "IN [a b]",
    "title: IN [a b]",
    "{}[]()^~*?:\\/",
    "微服务:*",
    "title:微服务",
    "微服务 OR 限流",
    "\uff54\uff49\uff54\uff4c\uff45\uff1a\uff0a",  # full-width "title:*"
    "🙂🙂🙂",
    "a\u200db",  # zero-width joiner
    "\u202etxet",  # right-to-left override
    "x" * 200,
    "x" * 201,
    "a " * 65,
    "微" * 80,
    "bell\x07",
    "nul\x00",
    "esc\x1b[31m",
    "del\x7f",
    "c1\x85",
    "tab\tand\nnewline\r",
)

_OPERATORS: Final = (
    "*",
    "?",
    "~",
    "~2",
    "^",
    "^9",
    "+",
    "-",
    "!",
    "&&",
    "||",
    "AND",
    "OR",
    "NOT",
    "TO",
    "IN",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    '"',
    "'",
    ":",
    "\\",
    "/",
    "/.*/",
    ">",
    "<=",
    "$",
    "%",
)
_WORDS: Final = ("token", "bucket", "微服务", "限流算法", "rate", "1", "3", "false", "a:1", "é")
_CONTROLS: Final = ("\x00", "\x01", "\x07", "\x08", "\x0b", "\x1b", "\x7f", "\x85", "\x9f")


def _piece(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return f"{rng.choice(FIELDS)}:{rng.choice(_WORDS + _OPERATORS)}"
    if roll < 0.45:
        low, high = rng.choice(_WORDS), rng.choice(_WORDS)
        return f"{rng.choice(FIELDS)}:{rng.choice('[{')}{low} TO {high}{rng.choice(']}')}"
    if roll < 0.75:
        return rng.choice(_OPERATORS)
    return rng.choice(_WORDS) + rng.choice(("", "*", "?", "~1", "^3", '"', ")"))


def hostile_queries(count: int, *, seed: int = 18, surrogates: bool = True) -> list[str]:
    """:data:`HOSTILE_QUERIES` then generated ones, ``count`` in all.

    About one in eight holds a control character, one in twenty is longer than the service
    accepts; with ``surrogates`` a few hold a lone surrogate (which HTTP clients cannot
    encode, hence the switch).
    """
    rng = random.Random(seed)
    queries = list(HOSTILE_QUERIES[:count])
    while len(queries) < count:
        text = rng.choice((" ", "", "  ")).join(_piece(rng) for _ in range(rng.randint(1, 6)))
        roll = rng.random()
        if roll < 0.125:
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice(_CONTROLS) + text[at:]
        elif roll < 0.175:
            text = (text + " ") * (201 // (len(text) + 1) + 1)
        elif surrogates and roll < 0.2:
            text += "\ud800"
        queries.append(text)
    return queries
