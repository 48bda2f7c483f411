"""Sans-I/O parts of port 9100: stream splitting, page counting, DLM headers, PJL answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_direct.model import Alert, PowerState, Severity
from emulator.jetdirect.jobs import (
    DlmError,
    Language,
    count_pages,
    count_pcl,
    count_postscript,
    count_text,
    detect_language,
    parse_dlm,
    settings_from_pjl,
)
from emulator.jetdirect.pjl import DeviceView, PjlSession, pjl_status
from emulator.jetdirect.stream import (
    TRANSITIONS,
    UEL,
    Input,
    JobData,
    Limits,
    PjlCommand,
    State,
    StreamSplitter,
    Violation,
)
from emulator.snmp.printer_status import printer_status

PS = b"%!PS-Adobe-3.0\n%%Pages: 9\n/F findfont\n(a) show showpage\n(b) show showpage\n"
PCL = b"\x1bE\x1b&l26A\x1b*b3WA\x0cB\x1b*t300RText\x0cmore text\x1bE"


def split_all(data: bytes, cuts: list[int]) -> list[object]:
    s = StreamSplitter()
    events: list[object] = []
    last = 0
    for cut in sorted(set(cuts)):
        events += s.feed(data[last:cut])
        last = cut
    events += s.feed(data[last:])
    events += s.eof()
    assert s.state is State.CLOSED
    return events


STREAM = (UEL + b"@PJL JOB NAME=\"a\"\r\n@PJL ENTER LANGUAGE=POSTSCRIPT\r\n" + PS + UEL
          + b"@PJL EOJ\r\n" + UEL + PCL + UEL + b"@PJL INFO ID\r\n@PJL ECHO D1\r\n" + UEL
          + b"\r\n")


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_chunk_boundaries_do_not_change_the_events(cuts: list[int]) -> None:
    assert split_all(STREAM, cuts) == [
        PjlCommand('@PJL JOB NAME="a"'), PjlCommand("@PJL ENTER LANGUAGE=POSTSCRIPT"),
        JobData(PS, "POSTSCRIPT"), PjlCommand("@PJL EOJ"), JobData(PCL, None),
        PjlCommand("@PJL INFO ID"), PjlCommand("@PJL ECHO D1")]


def test_bare_commands_and_nmap_probe() -> None:
    assert split_all(b"@PJL INFO STATUS\r\n", []) == [PjlCommand("@PJL INFO STATUS")]
    assert split_all(b"@PJL INFO STATUS", []) == [PjlCommand("@PJL INFO STATUS")]
    probe = b"\x1b%-12345X@PJL INFO ID\r\n\x1b%-12345X\r\n"
    assert split_all(probe, [3, 20]) == [PjlCommand("@PJL INFO ID")]
    assert split_all(b"hello\n", []) == [JobData(b"hello\n", None)]


def test_limits_close_the_stream() -> None:
    s = StreamSplitter(Limits(max_line=64, max_job=2048))
    assert s.feed(b"@PJL " + b"x" * 100) == [Violation("PJL line longer than 64 bytes")]
    assert s.state is State.CLOSED and s.feed(b"@PJL INFO ID\r\n") == []
    s = StreamSplitter(Limits(max_line=64, max_job=2048))
    events = s.feed(b"x" * 5000)
    assert events == [Violation("job larger than 2048 bytes")]


def test_every_missing_transition_is_an_error() -> None:
    for state in State:
        for event in Input:
            s = StreamSplitter()
            s.state = state
            if (state, event) in TRANSITIONS:
                s._to(event)
                assert s.state is TRANSITIONS[(state, event)]
            else:
                with pytest.raises(RuntimeError, match="no transition"):
                    s._to(event)


def test_page_counting_rules() -> None:
    assert count_postscript(PS) == (2, False)
    assert count_postscript(b"%!\n1 0 0 setrgbcolor showpage % showpage\n/showpage2 {} def")[0] == 1
    assert count_postscript(b"%!\n0 1 0 setrgbcolor showpage\n") == (1, True)
    # raster data holding a form feed byte does not eject; FF ejects; ESC E ejects marks
    assert count_pcl(PCL) == (2, False)
    assert count_pcl(b"\x1bE\x1bE") == (0, False)
    assert count_pcl(b"\x1b*r-3U\x1b*b2W\x0c\x0c") == (1, True)
    assert count_text(b"a\n" * 61) == 2
    assert count_text(b"a\x0cb\x0c") == 2
    assert count_text(b"\x0c\x0c") == 0
    assert detect_language(b"\x00\xff\xfe" * 50, None) is Language.GARBAGE
    assert detect_language(b"plain text", "POSTSCRIPT") is Language.POSTSCRIPT
    assert count_pages(b"%%XRXbegin\n%%XRXend\n", Language.DLM).pages == 0


@settings(max_examples=100, deadline=None)
@given(pages=st.lists(st.integers(1, 200), min_size=1, max_size=6))
def test_text_pages_are_sixty_lines_each(pages: list[int]) -> None:
    data = b"\x0c".join(b"line\r\n" * n for n in pages)
    assert count_text(data) == sum(-(-n // 60) for n in pages)


def test_pjl_job_settings() -> None:
    s = settings_from_pjl(['@PJL JOB NAME="Quarterly"', "@PJL SET COPIES=3",
                           "@PJL SET DUPLEX=ON", "@PJL SET RENDERMODE=GRAYSCALE",
                           "@PJL SET PAPER=A3", '@PJL SET USERNAME="anna"', "@PJL SET QTY=x"])
    assert (s.copies, s.duplex, s.render_color, s.large, s.job_name, s.user) == (
        3, True, False, True, "Quarterly", "anna")


DLM = (b'%%XRXbegin\n%%OID_ATT_JOB_TYPE OID_VAL_JOB_TYPE_DYNAMIC_LOADABLE_MODULE\n'
       b'%%OID_ATT_DLM_NAME "ColorWorks System"\n%%OID_ATT_DLM_VERSION "100.002.060.00001"\n'
       b'%%OID_ATT_DLM_SIGNATURE "0a0b0c"\n%%XRXend\n\x00\x01binary')


def test_dlm_header() -> None:
    dlm = parse_dlm(DLM)
    assert (dlm.name, dlm.version, dlm.signature, dlm.payload) == (
        "ColorWorks System", "100.002.060.00001", b"\x0a\x0b\x0c", b"\x00\x01binary")
    assert dlm.job_type == "OID_VAL_JOB_TYPE_DYNAMIC_LOADABLE_MODULE"
    with pytest.raises(DlmError, match="not hex"):
        parse_dlm(DLM.replace(b'"0a0b0c"', b'"zz"'))
    with pytest.raises(DlmError, match="XRXend"):
        parse_dlm(DLM.replace(b"%%XRXend", b"%%XRXnope"))
    with pytest.raises(DlmError, match="OID_ATT_DLM_NAME"):
        parse_dlm(DLM.replace(b"OID_ATT_DLM_NAME", b"OID_ATT_OTHER"))
    with pytest.raises(DlmError, match="line 3"):
        parse_dlm(DLM.replace(b"%%OID_ATT_DLM_NAME", b"garbage"))


def _view(power: PowerState, *alerts: Alert, msg: str = "", opmsg: str = "") -> DeviceView:
    status = printer_status(power, alerts, ready_message=msg, operator_message=opmsg)
    return DeviceView(model="WorkCentre 7545", status=status, power=power, page_count=42,
                      color=True, trays=4, duplex=True, a3=True,
                      options=("HDD-320GB",), serial="S1", product_code="C8045/ASP",
                      firmware=(("SS", "1.2.3"),))


def test_pjl_answers() -> None:
    from datetime import UTC, datetime
    jam = Alert(index=1, severity=Severity.CRITICAL, code=8, group=13, group_index=1,
                location=0, description="071-105 Tray 1 misfeed jam",
                raised_at=datetime(2026, 1, 5, tzinfo=UTC))
    assert pjl_status(_view(PowerState.READY)).code == 10001
    assert pjl_status(_view(PowerState.FAULTED, jam)).code == 42000
    assert not pjl_status(_view(PowerState.FAULTED, jam)).online
    assert pjl_status(_view(PowerState.PRINTING)).code == 10023
    s = PjlSession()
    assert s.command("@PJL ECHO DELIMITER5", _view(PowerState.READY)).reply == (
        "@PJL ECHO DELIMITER5\r\n\x0c")
    assert s.command("@PJL INFO PAGECOUNT", _view(PowerState.READY)).reply == (
        "@PJL INFO PAGECOUNT\r\n42\r\n\x0c")
    assert s.command("@PJL INFO NONSENSE", _view(PowerState.READY)).reply.endswith("?\r\n\x0c")
    assert s.command('@PJL RDYMSG DISPLAY="HELLO"', _view(PowerState.READY)).ready_message == (
        "HELLO")
    assert 'DISPLAY="HELLO"' in s.command("@PJL INFO STATUS",
                                          _view(PowerState.READY, msg="HELLO")).reply
    s.command("@PJL USTATUS DEVICE=VERBOSE TIMED=30", _view(PowerState.READY))
    assert (s.ustatus.device, s.ustatus.timed) == ("VERBOSE", 30)
    s.command("@PJL USTATUS TIMED=1", _view(PowerState.READY))  # out of range: ignored
    assert s.ustatus.timed == 30
    assert "IN TRAYS [4 ENUMERATED]" in s.command("@PJL INFO CONFIG",
                                                  _view(PowerState.READY)).reply
    assert "RENDERMODE=COLOR" in s.command("@PJL INFO VARIABLES", _view(PowerState.READY)).reply
    # OPMSG holds the printer off line with the message on the panel.
    assert s.command('@PJL OPMSG DISPLAY="CALL IT"', _view(PowerState.READY)).operator_message == (
        "CALL IT")
    offline = pjl_status(_view(PowerState.READY, opmsg="CALL IT"))
    assert (offline.code, offline.display, offline.online) == (10002, "CALL IT", False)
    # The categories tools ask for are answered, none with "?".
    for category, expect in (("MEMORY", "TOTAL=2147483648"), ("PRODINFO", 'SERIALNUMBER="S1"'),
                             ("FILESYS", "1:\t320000000000"),
                             ("CONFIG", "LANGUAGES [3 ENUMERATED]\r\n\tPCL\r\n\tPCLXL")):
        reply = s.command(f"@PJL INFO {category}", _view(PowerState.READY)).reply
        assert expect in reply, reply
    assert s.command("@PJL DINQUIRE LANG", _view(PowerState.READY)).reply == (
        "@PJL DINQUIRE LANG\r\nENGLISH\r\n\x0c")
    assert s.command("@PJL INQUIRE COPIES", _view(PowerState.READY)).reply == (
        "@PJL INQUIRE COPIES\r\n1\r\n\x0c")
