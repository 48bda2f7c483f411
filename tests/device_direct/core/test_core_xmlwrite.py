"""The payload's XML writer writes exactly what ElementTree writes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from device_direct.core.xmlwrite import Node, sub_element, tostring

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


def _ours(spec: Any, parent: Node | None = None) -> Node:
    tag, attrs, text, children = spec
    node = Node(tag) if parent is None else sub_element(parent, tag)
    for k, v in attrs:
        node.set(k, v)
    node.text = text
    for c in children:
        _ours(c, node)
    return node


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
    assert tostring(_ours(spec)) == expected
