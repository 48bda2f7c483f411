"""A minimal streaming XML writer, byte-for-byte what ElementTree writes.

The payload builder writes about a hundred elements and four hundred attributes per
payload, and a fleet builds hundreds of payloads a second; building an element tree
first (ElementTree, or even a minimal one) and serialising it afterwards was most of
the payload's cost. This writes each element once, in document order, and produces
the same bytes as ``ET.tostring(root, encoding="UTF-8", xml_declaration=True)`` would
for the subset the payload uses: attributes in the given order, text right after the
start tag, then children; no tails, no comments, no namespace prefixes (the default
namespace is an ``xmlns`` attribute). An empty element is written ``<tag />`` as
ElementTree does. ``tests/device_direct/core/test_core_xmlwrite.py`` holds it to
ElementTree's output.

Where a payload writes many elements of one shape (a hundred transfer lines, forty
faults), the caller formats them with :func:`attr_value` / :func:`text_value` itself and
hands the markup to :meth:`XmlWriter.markup`: one f-string per element instead of a list
of attribute pairs walked for each.

Attribute values of ``None`` are left out, so optional attributes read naturally::

    out = XmlWriter()
    out.start("Supplies")
    out.leaf("Supply", [("index", "1"), ("colorant", None)])
    out.end()
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"

Attrs = Iterable[tuple[str, str | None]]


def _escape_text(text: str) -> str:
    # ElementTree's _escape_cdata
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _escape_attr(text: str) -> str:
    # ElementTree's _escape_attrib (Python 3.11+): the text escapes, then these
    text = _escape_text(text)
    if '"' in text:
        text = text.replace('"', "&quot;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    if "\n" in text:
        text = text.replace("\n", "&#10;")
    if "\t" in text:
        text = text.replace("\t", "&#09;")
    return text


# Most values need no escaping: one regex scan says so, instead of a call per character.
_ATTR_SPECIAL = re.compile('[&<>"\\r\\n\\t]').search
_TEXT_SPECIAL = re.compile("[&<>]").search


def plain(texts: frozenset[str], limit: int) -> frozenset[str]:
    """Those of ``texts`` that need no escaping, in an attribute or as text, and hold
    only printable ASCII (which XML always carries) in at most ``limit`` characters.

    Usually all of them: one look through all of them at once says so (the space
    between them is printable ASCII and needs no escaping), before any text by text."""
    if not texts:
        return texts
    everything = " ".join(texts)
    # Printable: no tab or line break; then only these four of the specials can be left
    if (everything.isascii() and everything.isprintable() and "&" not in everything
            and "<" not in everything and ">" not in everything and '"' not in everything
            and max(map(len, texts)) <= limit):
        return texts
    return frozenset(t for t in texts if t.isascii() and t.isprintable()
                     and len(t) <= limit and not _ATTR_SPECIAL(t))


def attr_value(value: str) -> str:
    """``value`` escaped for a double-quoted attribute, as ElementTree escapes it."""
    return _escape_attr(value) if _ATTR_SPECIAL(value) else value


def text_value(text: str) -> str:
    """``text`` escaped as element text, as ElementTree escapes it."""
    return _escape_text(text) if _TEXT_SPECIAL(text) else text


def _attrs(items: Attrs) -> str:
    return "".join([
        f' {name}="{_escape_attr(value) if _ATTR_SPECIAL(value) else value}"'
        for name, value in items if value is not None
    ])


_text = text_value


class XmlWriter:
    """Writes one document in order: :meth:`start` (with all attributes), optional
    :meth:`text`, children, :meth:`end`; :meth:`leaf` for an element without children."""

    __slots__ = ("_open", "_out", "_stack")

    def __init__(self) -> None:
        self._out: list[str] = [_DECLARATION]
        self._stack: list[str] = []
        self._open = False  # the last start tag still lacks its ">"

    def start(self, tag: str, attrs: Attrs = ()) -> None:
        """Open ``tag``; its text and children follow, then :meth:`end`."""
        if self._open:
            self._out.append(">")
        self._out.append(f"<{tag}{_attrs(attrs)}")
        self._stack.append(tag)
        self._open = True

    def text(self, text: str | None) -> None:
        """The text of the element just started (before any child); empty writes none."""
        if not text:
            return
        if not self._open:
            raise ValueError("text must come right after its element's start tag")
        self._out.append(">" + _text(text))
        self._open = False

    def end(self) -> None:
        """Close the innermost open element."""
        tag = self._stack.pop()
        if self._open:
            self._out.append(" />")
            self._open = False
        else:
            self._out.append(f"</{tag}>")

    def leaf(self, tag: str, attrs: Attrs = (), text: str | None = None) -> None:
        """An element with attributes and maybe text, and no children."""
        if self._open:
            self._out.append(">")
            self._open = False
        if text:
            self._out.append(f"<{tag}{_attrs(attrs)}>{_text(text)}</{tag}>")
        else:
            self._out.append(f"<{tag}{_attrs(attrs)} />")

    def markup(self, markup: str) -> None:
        """Whole elements written by the caller, in place (children of the element
        open now). ``markup`` is written as it is: every value in it must have gone
        through :func:`attr_value` or :func:`text_value` (or be known to need neither:
        digits, a validated code), and a childless element must be written ``<tag />``
        as ElementTree writes it. Empty markup writes nothing (an element with no
        children stays ``<tag />``)."""
        if not markup:
            return
        if self._open:
            self._out.append(">")
            self._open = False
        self._out.append(markup)

    def mark(self) -> int:
        """Where the next element begins, for :meth:`since` (the start tag still open,
        if any, is closed first, as the next element would)."""
        if self._open:
            self._out.append(">")
            self._open = False
        return len(self._out)

    def since(self, mark: int) -> str:
        """The markup written since :meth:`mark` gave ``mark``: whole elements, once
        those begun since are ended; :meth:`markup` writes it again elsewhere."""
        return "".join(self._out[mark:])

    def getvalue(self) -> bytes:
        """The finished document as UTF-8 bytes (every element must be ended)."""
        if self._stack:
            raise ValueError(f"elements left open: {self._stack}")
        return "".join(self._out).encode("utf-8")
