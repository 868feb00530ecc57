"""Unit tests of what article text may contain (:mod:`services.article.content`)."""

from __future__ import annotations

import pytest

from services.article.content import ABSTRACT_MAX_CHARS, abstract_of, plain_text, sanitize_html


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("<p>Hi <b>there</b></p>", "<p>Hi <b>there</b></p>"),
        ("<h2>T</h2><ul><li>a</li></ul><pre><code>x</code></pre>", None),
        ('<img src="https://example.com/a.png" alt="a">', None),
        ('<a href="https://example.com">x</a>', None),
        ("<table><tbody><tr><td>1</td></tr></tbody></table>", None),
    ],
)
def test_formatting_is_kept(fragment: str, expected: str | None) -> None:
    cleaned = sanitize_html(fragment)
    if expected is not None:
        assert cleaned == expected
    assert cleaned.replace(' rel="noopener noreferrer nofollow"', "") == fragment


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("<script>alert(1)</script>ok", "ok"),
        ('<img src="x" onerror="alert(1)">', '<img src="x">'),
        ('<a href="javascript:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
        ('<p style="position:fixed">x</p>', "<p>x</p>"),
        ("<iframe src=//evil></iframe>x", "x"),
    ],
)
def test_script_is_removed(fragment: str, expected: str) -> None:
    assert sanitize_html(fragment) == expected


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("  Hello\n\tworld  ", "Hello world"),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("a < b", "a < b"),
        ("<b>bold</b> title", "bold title"),
        ("<p>one</p><p>two</p>", "one two"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;after", "after"),
        ("bell\x07 and nul\x00", "bell and nul"),
        ("标题 😀", "标题 😀"),
    ],
)
def test_plain_text(fragment: str, expected: str) -> None:
    assert plain_text(fragment) == expected


def test_deeply_encoded_markup_stays_escaped() -> None:
    nested = "&amp;amp;amp;amp;amp;lt;script&amp;amp;amp;amp;amp;gt;"
    assert "<" not in plain_text(nested)


def test_abstract_is_a_prefix_of_the_text() -> None:
    content = "<h1>Title</h1>" + "<p>word</p>" * 100
    abstract = abstract_of(content)
    assert len(abstract) == ABSTRACT_MAX_CHARS
    assert abstract.startswith("Title word word")
