"""The device-field checks and stored facts of an upload, found in one walk of the tree.

The walk replaced a findall per required path; a reference copy of those findalls is
kept here, and for any set of fields taken out of the sample payload both must refuse
with the same words (the first failing field, the first element lacking an attribute)
or both accept.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from refserver_helpers import make_zip, payload_xml

from emulator.server.payload_check import (
    DEVICE_REQUIRED,
    ENTRY_NAME,
    NS,
    PayloadRejected,
    check_payload,
)


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def reference_check(root: Any) -> None:
    """The device-field check as it was: a findall per path of DEVICE_REQUIRED."""
    for path in DEVICE_REQUIRED:
        where, _, attr = path.partition("/@")
        found = root.findall("/".join(_q(p) for p in where.split("/")))
        if attr:
            bad = [e for e in found if e.get(attr) is None]
            if bad:
                raise PayloadRejected("schema_invalid",
                                      f"{ENTRY_NAME}: device payload {where} lacks @{attr} "
                                      f"(line {bad[0].sourceline})")
        elif not found:
            raise PayloadRejected("schema_invalid",
                                  f"{ENTRY_NAME}: a device payload needs {path} (only a "
                                  "payload with <Source kind=\"manager\"> may omit it)")


# What can be taken out of the sample and leave it schema-valid: whole elements (the
# schema lets a manager's payload omit them) and optional attributes, on one element.
ELEMENTS = ("Identity/Manufacturer", "Identity/ProductCode", "Identity/Firmware",
            "Identity/Options", "Network/MAC", "Status/FaultHistory",
            "Status/TransferHistory", "Usage")
ATTRIBUTES = (("Status", 0, "power"),
              *(("Status/Alert", i, a) for i in (0, 1) for a in (
                  "severity", "code", "group", "groupIndex", "location", "raisedAt")),
              *(("Supplies/Supply", i, a) for i in (0, 4, 7) for a in (
                  "type", "unit", "capacity", "level", "class", "lifetimeImpressions")))
SOURCE = (f'<Source xmlns="{NS}" kind="manager"><Manager hostname="pc-1" os="Windows" '
          'appVersion="1.0" printersInScope="1" printersOutOfScope="0" databaseBytes="1" '
          'securityMode="normal"/><Discovery at="2026-01-12T02:00:00Z" method="snmpv2c"/>'
          '</Source>')


def _payload(drop_elements: tuple[str, ...] = (),
             drop_attributes: tuple[tuple[str, int, str], ...] = (), *,
             manager: bool = False, meters: bool = True) -> tuple[str, bytes]:
    upload_id, xml = payload_xml()
    root = etree.fromstring(xml)
    for path in drop_elements:
        for element in root.findall("/".join(_q(p) for p in path.split("/"))):
            element.getparent().remove(element)
    for path, index, attr in drop_attributes:
        found = root.findall("/".join(_q(p) for p in path.split("/")))
        if index < len(found):
            found[index].attrib.pop(attr, None)
    if not meters:
        for meter in root.findall(f"{_q('Counters')}/{_q('Meter')}"):
            meter.getparent().remove(meter)
    if manager:
        root.append(etree.fromstring(SOURCE))
    return upload_id, etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _outcome(check: Any, xml: bytes) -> str:
    try:
        check(xml)
    except PayloadRejected as exc:
        return f"{exc.error}: {exc.detail}"
    return "accepted"


def _reference(xml: bytes) -> None:
    reference_check(etree.fromstring(xml))


@pytest.mark.parametrize("path", [*ELEMENTS, "Counters/Meter"])
def test_each_missing_device_element_is_refused_by_name(path: str) -> None:
    upload_id, xml = (_payload(meters=False) if path == "Counters/Meter"
                      else _payload((path,)))
    with pytest.raises(PayloadRejected) as info:
        check_payload(make_zip({ENTRY_NAME: xml}), upload_id=upload_id)
    named = path if path != "Identity/Firmware" else "Identity/Firmware/Module"
    assert info.value.error == "schema_invalid"
    assert info.value.detail == (f"{ENTRY_NAME}: a device payload needs {named} (only a "
                                 "payload with <Source kind=\"manager\"> may omit it)")


@pytest.mark.parametrize("drop", ATTRIBUTES, ids=lambda d: f"{d[0]}[{d[1]}]@{d[2]}")
def test_each_missing_device_attribute_is_refused_naming_its_line(
        drop: tuple[str, int, str]) -> None:
    upload_id, xml = _payload(drop_attributes=(drop,))
    with pytest.raises(PayloadRejected) as info:
        check_payload(make_zip({ENTRY_NAME: xml}), upload_id=upload_id)
    line = etree.fromstring(xml).findall(
        "/".join(_q(p) for p in drop[0].split("/")))[drop[1]].sourceline
    assert info.value.detail == (f"{ENTRY_NAME}: device payload {drop[0]} lacks @{drop[2]} "
                                 f"(line {line})")


def test_a_manager_payload_may_omit_every_device_field() -> None:
    upload_id, xml = _payload(ELEMENTS, ATTRIBUTES, manager=True, meters=False)
    facts = check_payload(make_zip({ENTRY_NAME: xml}), upload_id=upload_id)
    assert facts.source == "manager" and facts.meters == {} and facts.faults == ()
    assert facts.supplies[0].type == "" and facts.supplies[0].capacity == -2


@settings(max_examples=60, deadline=None)
@given(st.sets(st.sampled_from(ELEMENTS), max_size=4),
       st.sets(st.sampled_from(ATTRIBUTES), max_size=5), st.booleans())
def test_refusals_are_those_of_the_findall_check(
        elements: set[str], attributes: set[tuple[str, int, str]], meters: bool) -> None:
    upload_id, xml = _payload(tuple(sorted(elements)), tuple(sorted(attributes)),
                              meters=meters)
    body = make_zip({ENTRY_NAME: xml})
    got = _outcome(lambda _: check_payload(body, upload_id=upload_id), xml)
    assert got == _outcome(_reference, xml)


def test_processing_instructions_are_skipped_as_the_schema_skips_them() -> None:
    # The schema lets a processing instruction stand anywhere; the facts used to take
    # one inside <Counters> for a meter (a 500: int("abc"), or a meter named None).
    upload_id, xml = payload_xml()
    plain = check_payload(make_zip({ENTRY_NAME: xml}), upload_id=upload_id)
    for tag in (b"<Counters>", b"<Supplies>", b"<FaultHistory>", b"<Status power=\"ready\">",
                b"<Identity>"):
        assert tag in xml
        xml = xml.replace(tag, tag + b"<?note abc?>", 1)
    facts = check_payload(make_zip({ENTRY_NAME: xml}), upload_id=upload_id)
    assert facts == plain
