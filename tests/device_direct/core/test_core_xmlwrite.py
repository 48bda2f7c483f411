"""The payload's XML writer writes exactly what ElementTree writes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_direct.core.xmlwrite import XmlWriter

# XML 1.0 characters (what the payload's text cleaner lets through), specials included.
xml_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
    .filter(lambda c: c in "\t\n\r" or ord(c) >= 0x20)
    | st.sampled_from(list("&<>\"'\t\r\n")),
    max_size=20,
)
names = st.sampled_from(["a", "b", "code", "name", "xmlns", "value"])

tree: Any = st.deferred(
    lambda: st.tuples(
        st.sampled_from(["DeviceData", "Supply", "Meter", "Fault", "X"]),
        st.lists(st.tuples(names, xml_text), max_size=4, unique_by=lambda kv: kv[0]),
        st.one_of(st.none(), xml_text),
        st.lists(tree, max_size=3),
    )
)


def _ours(spec: Any, out: XmlWriter) -> None:
    tag, attrs, text, children = spec
    if children or not text or len(tag) % 2:  # both ways of writing a childless element
        out.start(tag, attrs)
        out.text(text)
        for c in children:
            _ours(c, out)
        out.end()
    else:
        out.leaf(tag, attrs, text)


def _theirs(spec: Any, parent: ET.Element | None = None) -> ET.Element:
    tag, attrs, text, children = spec
    node = ET.Element(tag) if parent is None else ET.SubElement(parent, tag)
    for k, v in attrs:
        node.set(k, v)
    node.text = text
    for c in children:
        _theirs(c, node)
    return node


@given(tree)
def test_same_bytes_as_elementtree(spec: Any) -> None:
    expected = ET.tostring(_theirs(spec), encoding="UTF-8", xml_declaration=True)
    out = XmlWriter()
    _ours(spec, out)
    assert out.getvalue() == expected


def test_optional_attributes_are_left_out_and_misuse_is_refused() -> None:
    out = XmlWriter()
    out.start("A", [("x", "1"), ("y", None), ("z", "")])
    out.leaf("B", [("n", None)])
    with pytest.raises(ValueError, match="right after"):
        out.text("late")
    with pytest.raises(ValueError, match="left open"):
        out.getvalue()
    out.end()
    assert out.getvalue().endswith(b'<A x="1" z=""><B /></A>')
