"""Profiles: the shipped ones load; a wrong one is refused naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.errors import ProfileError
from emulator.model import available_profiles, load_profile
from emulator.model.profile import PROFILE_DIR, read_profile

GOOD = (PROFILE_DIR / "office-color.toml").read_text()


def test_shipped_profiles_load() -> None:
    names = available_profiles()
    assert {"office-color", "office-mono", "production"} <= set(names)
    color = load_profile("office-color")
    assert color.engine.color and color.engine.trays == 4
    types = [s.type for s in color.supplies]
    assert types.count("toner") == 4 and types.count("opc") == 4
    assert {"fuser", "transferUnit", "wasteToner"} <= set(types)
    waste = next(s for s in color.supplies if s.type == "wasteToner")
    assert waste.supply_class == 4
    black = color.supplies[0]
    assert (black.name, black.part_number, black.capacity) == ("Black Toner", "006R01509", 5300)
    assert not load_profile("office-mono").engine.color
    assert load_profile("production").usage.large_share > 0.2
    assert load_profile("office-color") is color  # cached: a fleet shares one object


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (("ppm = 45", "ppm = 45\nspeed = 3"), "engine.speed", "unknown key"),
        (("ppm = 45", 'ppm = "fast"'), "engine.ppm", "expected an integer"),
        (('code = "071-105"', 'code = "71-105"'), "faults[0]", "chain-link"),
        (("print = 0.72", "print = 0.5"), "usage", "add up to 1"),
        (('rule = "mm-paper"', 'rule = "metres"'), "hfsi[0].rule", "must be one of"),
        (('type = "toner"', 'type = "tonre"'), "supplies[0].type", "must be one of"),
        (('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"'), "usage", "time zone"),
        (("class = 4", "class = 3"), "supplies[10]", "waste"),
        (("lead_time_days = [2, 5]", "lead_time_days = [5, 2]"), "usage", "lead_time_days"),
        (("month_factors = [0.95, ", "month_factors = ["), "usage.month_factors",
         "12 numbers"),
        (('hfsi = "950-801"', "hfsi = 801"), "supplies[8].hfsi", "expected a string"),
        # TOML's inf passed min=0 and crashed the day simulation at device start.
        (("rate = 0.12", "rate = inf"), "faults[0].rate", "finite number"),
        (("pages_per_day = ", "pages_per_day = inf\n#"), "usage.pages_per_day",
         "finite number"),
        # A typo of a huge number ran the model out of memory or time.
        (("rate = 0.12", "rate = 1e308"), "faults[0].rate", "must be <= 100"),
        (("pages_per_day = ", "pages_per_day = 1e12\n#"), "usage.pages_per_day",
         "must be <= 200000"),
        (("ppm = 45", "ppm = 45000"), "engine.ppm", "must be <= 500"),
        (("[usage]", '[web]\nadmin_password = "abc"\n[usage]'), "web.admin_password",
         "4-128 characters"),
    ],
)
def test_bad_profile_names_file_and_key(tmp_path: Path, change: tuple[str, str], key: str,
                                        words: str) -> None:
    old, new = change
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ProfileError) as info:
        read_profile(path)
    message = str(info.value)
    assert str(path) in message
    assert f"'{key}" in message
    assert words in message


def test_missing_table_and_syntax_error(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("[usage]", "[usage_pattern]"))
    with pytest.raises(ProfileError, match=r"bad\.toml.*'usage'.*required"):
        read_profile(path)
    path = _write(tmp_path, "[identity\n")
    with pytest.raises(ProfileError, match=r"bad\.toml.*not valid TOML"):
        read_profile(path)


def test_unknown_profile_name_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="office-color"):
        load_profile("office-colour")


def test_a_supply_linked_to_an_unknown_hfsi_item_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace('hfsi = "950-801"', 'hfsi = "950-899"', 1))
    with pytest.raises(ProfileError, match=r"bad\.toml.*Fuser.*950-899.*not an HFSI item"):
        read_profile(path)
