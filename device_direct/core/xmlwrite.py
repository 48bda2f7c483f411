"""A minimal XML element tree and writer, byte-for-byte what ElementTree writes.

The payload builder makes thousands of small elements per payload and a fleet builds
thousands of payloads a second; ``xml.etree.ElementTree`` spends most of that time in
its general serializer (namespace discovery, per-node dispatch). This writes the same
bytes as ``ET.tostring(root, encoding="UTF-8", xml_declaration=True)`` for the subset
the payload uses: elements with attributes in insertion order and text, no tails, no
comments, no namespace prefixes (the default namespace is an ``xmlns`` attribute).
``tests/device_direct/core/test_core_xmlwrite.py`` holds it to ElementTree's output.
"""

from __future__ import annotations

import re

_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"


class Node:
    """One element: tag, attributes in order, text, children."""

    __slots__ = ("attrib", "children", "tag", "text")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.attrib: list[tuple[str, str]] = []
        self.text: str | None = None
        self.children: list[Node] = []

    def set(self, name: str, value: str) -> None:
        self.attrib.append((name, value))


def sub_element(parent: Node, tag: str) -> Node:
    child = Node(tag)
    parent.children.append(child)
    return child


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
_ATTR_SPECIAL = re.compile('[&<>"\r\n\t]').search
_TEXT_SPECIAL = re.compile("[&<>]").search


def _write(node: Node, out: list[str]) -> None:
    tag = node.tag
    if node.attrib:
        out.append("<" + tag + "".join([
            f' {name}="{_escape_attr(value) if _ATTR_SPECIAL(value) else value}"'
            for name, value in node.attrib
        ]))
    else:
        out.append("<" + tag)
    text = node.text
    if text or node.children:
        out.append(">")
        if text:
            out.append(_escape_text(text) if _TEXT_SPECIAL(text) else text)
        for child in node.children:
            _write(child, out)
        out.append(f"</{tag}>")
    else:
        out.append(" />")


def tostring(root: Node) -> bytes:
    """The document as UTF-8 bytes with an XML declaration."""
    out = [_DECLARATION]
    _write(root, out)
    return "".join(out).encode("utf-8")
