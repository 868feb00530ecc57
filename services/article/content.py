"""What article text may contain: sanitised HTML content, plain-text titles and abstracts.

- **Content** is HTML from a rich-text editor. :func:`sanitize_html` keeps formatting
  (paragraphs, headings, emphasis, lists, links, images, tables, code) and removes
  everything that can run script: ``<script>``/``<style>`` with their text, ``<iframe>``,
  ``<svg>``, ``<object>`` and other unknown elements, every ``on*`` event handler and
  ``style`` attribute, and URLs other than ``http``, ``https`` and ``mailto`` (so
  ``javascript:`` and ``data:`` links are dropped). Links get ``rel="noopener noreferrer
  nofollow"``. The sanitiser is ``nh3`` (the Rust ``ammonia`` library), which parses like a
  browser, so obfuscations such as ``JaVaScRiPt:`` or entity-encoded schemes do not pass.
- **Titles and abstracts** are plain text: :func:`plain_text` removes every tag, decodes
  entities, and repeats until nothing changes, so that no string that decodes to markup
  (``&lt;script&gt;``) survives either; whitespace runs become one space. The abstract is the
  first :data:`ABSTRACT_MAX_CHARS` characters of the content's text.
"""

from __future__ import annotations

import html
import re

import nh3

ABSTRACT_MAX_CHARS = 128
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"
# Bounded: each pass decodes one level of entities; deeper nesting ends escaped (still safe).
_PLAIN_TEXT_PASSES = 4
# A space before block-level tags keeps "<p>a</p><p>b</p>" from becoming "ab".
_BLOCK_TAG = re.compile(
    r"<(?=/?(?:p|div|br|li|ul|ol|h[1-6]|tr|td|th|table|blockquote|pre|hr|section|article"
    r"|header|footer|figure|figcaption|dd|dt)\b)",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def sanitize_html(fragment: str) -> str:
    """``fragment`` with everything that could run script removed, formatting kept."""
    return nh3.clean(fragment, url_schemes=set(URL_SCHEMES), link_rel=LINK_REL)


def _strip_tags(fragment: str) -> str:
    return html.unescape(nh3.clean(_BLOCK_TAG.sub(" <", fragment), tags=set()))


def plain_text(fragment: str) -> str:
    """The text of an HTML (or plain) ``fragment``: no tags, entities decoded, one-spaced."""
    text = _CONTROL.sub("", fragment)
    for _ in range(_PLAIN_TEXT_PASSES):
        stripped = _strip_tags(text)
        if stripped == text:
            break
        text = stripped
    else:
        # Still decoding after the last pass: keep the text escaped instead.
        text = nh3.clean(text, tags=set())
    return " ".join(_CONTROL.sub("", text).split())


def abstract_of(content: str) -> str:
    """The plain-text excerpt of ``content`` shown in article lists."""
    return plain_text(content)[:ABSTRACT_MAX_CHARS]
