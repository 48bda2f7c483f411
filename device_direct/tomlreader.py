"""Typed reading of TOML tables whose errors name the file and the key.

Config files are TOML (``tomllib``). A :class:`Table` wraps one parsed table with the
file it came from and its dotted path, so a wrong value raises
``ConfigError("fleet.toml: key 'server.port': expected an integer, got 'x'")``.
Unknown keys are errors too (a typo should not be silently ignored): call
:meth:`Table.done` after reading a table.
"""

from __future__ import annotations

import builtins
import math
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from device_direct.errors import ConfigError

T = TypeVar("T")
_MISSING: Any = object()


def load_toml(path: Path | str) -> Table:
    """Parse a TOML file; syntax errors name the file and the line."""
    return Table(read_toml(path), source=str(path), prefix="")


def read_toml(path: Path | str) -> dict[str, Any]:
    """A TOML file as a dict; a missing, unreadable or malformed file names the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=p) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=p) from exc


def parse_toml(text: str, *, source: str = "<string>") -> Table:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=source) from exc
    return Table(data, source=source, prefix="")


class Table:
    """One TOML table plus where it came from."""

    __slots__ = ("_data", "_read", "prefix", "source")

    def __init__(
        self, data: dict[builtins.str, Any], *, source: builtins.str, prefix: builtins.str
    ) -> None:
        self._data = data
        self.source = source
        self.prefix = prefix
        self._read: set[builtins.str] = set()

    def key(self, name: builtins.str) -> builtins.str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: builtins.str, message: builtins.str) -> ConfigError:
        return ConfigError(message, path=self.source, key=self.key(name))

    def __contains__(self, name: builtins.str) -> builtins.bool:
        return name in self._data

    def keys(self) -> Iterator[builtins.str]:
        return iter(self._data)

    def raw(self, name: builtins.str, default: Any = _MISSING) -> Any:
        self._read.add(name)
        if name not in self._data:
            if default is _MISSING:
                raise self.error(name, "is required")
            return default
        return self._data[name]

    def _typed(self, name: builtins.str, kind: type[T], what: builtins.str, default: Any) -> T:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value  # type: ignore[no-any-return]
        # bool is an int in Python; a config 'true' is not a number.
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            raise self.error(name, f"expected {what}, got {value!r}")
        return value

    def str(self, name: builtins.str, default: Any = _MISSING) -> Any:
        return self._typed(name, str, "a string", default)

    def bool(self, name: builtins.str, default: Any = _MISSING) -> Any:
        return self._typed(name, bool, "true or false", default)

    def int(
        self,
        name: builtins.str,
        default: Any = _MISSING,
        *,
        min: builtins.int | None = None,
        max: builtins.int | None = None,
    ) -> Any:
        value = self._typed(name, int, "an integer", default)
        if isinstance(value, int):
            if min is not None and value < min:
                raise self.error(name, f"must be >= {min}, got {value}")
            if max is not None and value > max:
                raise self.error(name, f"must be <= {max}, got {value}")
        return value

    def float(
        self,
        name: builtins.str,
        default: Any = _MISSING,
        *,
        min: builtins.float | None = None,
        max: builtins.float | None = None,
    ) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):  # TOML has inf and nan; no setting means them
            raise self.error(name, f"expected a finite number, got {value}")
        if min is not None and value < min:
            raise self.error(name, f"must be >= {min}, got {value}")
        if max is not None and value > max:
            raise self.error(name, f"must be <= {max}, got {value}")
        return value

    def choice(
        self, name: builtins.str, choices: tuple[builtins.str, ...], default: Any = _MISSING
    ) -> Any:
        value = self.str(name, default)
        if value is not default and value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def str_list(self, name: builtins.str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def table(self, name: builtins.str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, dict):
            raise self.error(name, f"expected a table, got {value!r}")
        return Table(value, source=self.source, prefix=self.key(name))

    def tables(self, name: builtins.str, default: Any = _MISSING) -> Any:
        """An array of tables (``[[name]]``)."""
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(name, f"expected an array of tables, got {value!r}")
        return [
            Table(v, source=self.source, prefix=f"{self.key(name)}[{i}]")
            for i, v in enumerate(value)
        ]

    def done(self) -> None:
        """Raise on keys that were never read: they are typos or unsupported."""
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            raise self.error(unknown[0], "unknown key (misspelled, or not supported here)")
