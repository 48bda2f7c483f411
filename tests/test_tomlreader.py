"""TOML reading: every error names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_direct.errors import ConfigError
from device_direct.tomlreader import load_toml, parse_toml


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_toml(tmp_path / "nope.toml")


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("a = [1, \n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_toml(p)


def test_wrong_type_names_the_dotted_key() -> None:
    t = parse_toml('[server]\nport = "x"\n', source="fleet.toml")
    with pytest.raises(ConfigError, match=r"fleet.toml: key 'server.port': expected an integer"):
        t.table("server").int("port")


def test_bool_is_not_an_int() -> None:
    t = parse_toml("n = true\n", source="c.toml")
    with pytest.raises(ConfigError, match="key 'n'"):
        t.int("n")


def test_range_choice_and_unknown_keys() -> None:
    t = parse_toml('n = 5\nmode = "sideways"\ntypo = 1\n', source="c.toml")
    with pytest.raises(ConfigError, match="must be <= 3"):
        t.int("n", max=3)
    with pytest.raises(ConfigError, match="key 'mode': must be one of off, manual"):
        t.choice("mode", ("off", "manual"))
    with pytest.raises(ConfigError, match="key 'typo': unknown key"):
        t.done()


def test_a_number_must_be_finite() -> None:
    # TOML allows inf and nan; they passed a min=0 check and crashed the emulated
    # printer's day simulation (a profile's fault rate or pages_per_day).
    t = parse_toml("a = inf\nb = nan\nc = -inf\nd = 1e308\n", source="p.toml")
    for key in ("a", "b", "c"):
        with pytest.raises(ConfigError, match=f"key '{key}': expected a finite number"):
            t.float(key, min=0)
    assert t.float("d") == 1e308


def test_array_of_tables_keys_are_indexed() -> None:
    t = parse_toml('[[supply]]\nname = "k"\n[[supply]]\nname = 3\n', source="p.toml")
    rows = t.tables("supply")
    assert rows[0].str("name") == "k"
    with pytest.raises(ConfigError, match=r"key 'supply\[1\].name'"):
        rows[1].str("name")


def test_defaults_are_returned_untouched() -> None:
    t = parse_toml("", source="c.toml")
    assert t.int("n", 7) == 7
    assert t.str("s", None) is None
    assert t.str_list("l", ()) == ()
