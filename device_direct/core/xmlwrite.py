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


def _attrs(items: Attrs) -> str:
    return "".join([
        f' {name}="{_escape_attr(value) if _ATTR_SPECIAL(value) else value}"'
        for name, value in items if value is not None
    ])


def _text(text: str) -> str:
    return _escape_text(text) if _TEXT_SPECIAL(text) else text


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

    def getvalue(self) -> bytes:
        """The finished document as UTF-8 bytes (every element must be ended)."""
        if self._stack:
            raise ValueError(f"elements left open: {self._stack}")
        return "".join(self._out).encode("utf-8")
