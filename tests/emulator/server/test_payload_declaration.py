"""The DOCTYPE/ENTITY refusal's scan (``has_declaration``) finds exactly what the
case-insensitive regex it stands for finds, anywhere in a payload, and the refusal
still names it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from refserver_helpers import make_zip, payload_xml

from emulator.server.payload_check import (
    _DECLARATION,
    PayloadRejected,
    check_payload,
    has_declaration,
)

# Pieces that make near misses likely: "<!" alone, comments, CDATA, the two keywords in
# any case and cut short, a "<" before "<!".
_PIECES = st.sampled_from([b"<", b"!", b"<!", b"<!--", b"-->", b"<![CDATA[", b"DOCTYPE",
                           b"doctype", b"DocType", b"ENTITY", b"entity", b"EnTiTy",
                           b"DOCTYP", b"ENTIT", b" ", b"a", b"\x00", b"\xc3\xa9"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=12))
def test_the_scan_agrees_with_the_regex(pieces: list[bytes]) -> None:
    xml = b"".join(pieces)
    assert has_declaration(xml) == (_DECLARATION.search(xml) is not None), xml


@pytest.mark.parametrize("declaration", [b"<!DOCTYPE x>", b"<!doctype x>",
                                         b"<!-- c --><!ENTITY e 'v'>"])
def test_a_declaration_after_a_comment_is_still_refused(declaration: bytes) -> None:
    upload_id, xml = payload_xml()
    head, _, rest = xml.partition(b"?>")
    doc = head + b"?>\n<!-- a comment first -->\n" + declaration + rest
    with pytest.raises(PayloadRejected, match="DOCTYPE or ENTITY"):
        check_payload(make_zip({"device-data.xml": doc}), upload_id=upload_id)
