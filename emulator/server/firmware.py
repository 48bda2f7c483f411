"""Firmware catalog logic: versions, signed manifests, byte ranges. Pure functions.

A manifest is signed with Ed25519 over its canonical JSON
(``json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
encoded as UTF-8), so the device can check it with the pinned public key before it
trusts any field. Versions are dotted numbers compared number by number
(``100.2.10`` > ``100.2.9``; ``1.0`` == ``1.0.0``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from emulator.server.storage import iso

_VERSION = re.compile(r"^\d{1,9}(\.\d{1,9}){0,7}$")
_MODEL = re.compile(r"^[\w .+-]{1,128}$")
IMAGE_PATH = "/dd/v1/firmware/images/"


def parse_version(text: str) -> tuple[int, ...]:
    """``"100.002.057"`` -> ``(100, 2, 57)`` with trailing zeros dropped; ValueError if bad."""
    if not _VERSION.match(text):
        raise ValueError(f"version {text!r} is not dotted numbers like 100.2.57")
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def check_model(model: str) -> str:
    """A model name as the catalog accepts it; ValueError naming the problem."""
    if not _MODEL.match(model):
        raise ValueError(f"model {model!r} must be 1-128 letters, digits, space or ._+-")
    return model


def canonical_json(manifest: dict[str, Any]) -> bytes:
    """The bytes a manifest signature covers."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def make_manifest(model: str, version: str, image: bytes, *, expires_at: datetime
                  ) -> dict[str, Any]:
    """The manifest of an image (model, version, size, sha256, url, expires_at)."""
    check_model(model)
    parse_version(version)
    digest = hashlib.sha256(image).hexdigest()
    return {
        "model": model,
        "version": version,
        "size": len(image),
        "sha256": digest,
        "url": IMAGE_PATH + digest,
        "expires_at": iso(expires_at),
    }


def sign_manifest(manifest: dict[str, Any], key: ed25519.Ed25519PrivateKey) -> str:
    """Base64 Ed25519 signature over the canonical JSON of ``manifest``."""
    return base64.b64encode(key.sign(canonical_json(manifest))).decode("ascii")


def newest_offer(
    catalog: list[dict[str, Any]], *, version: str, now: datetime
) -> dict[str, Any] | None:
    """The newest unexpired catalog entry newer than ``version``, or None (HTTP 204).

    ``catalog`` holds ``{"manifest": ..., "signature": ...}`` entries of one model.
    """
    current = parse_version(version)
    best: dict[str, Any] | None = None
    for entry in catalog:
        m = entry["manifest"]
        if m["expires_at"] <= iso(now) or parse_version(m["version"]) <= current:
            continue
        if best is None or parse_version(m["version"]) > parse_version(
            best["manifest"]["version"]
        ):
            best = entry
    return best


class RangeNotSatisfiable(ValueError):
    """A Range header that cannot be served (HTTP 416)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range ``first..last`` of a body of ``size`` bytes."""

    first: int
    last: int
    size: int

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.last < self.size:
            raise ValueError(f"bad range {self.first}-{self.last} of {self.size}")

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Parse a single-range ``Range`` header (RFC 9110); None means the whole body.

    Multiple ranges are not served (a device never asks for them): they, malformed
    headers and ranges past the end raise :class:`RangeNotSatisfiable`.
    """
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        raise RangeNotSatisfiable(f"unsupported Range {header!r}: one bytes=range only")
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash or not (first_s.isdigit() or first_s == "") or not (
        last_s.isdigit() or last_s == ""
    ):
        raise RangeNotSatisfiable(f"malformed Range {header!r}")
    if first_s == "":  # suffix range: the last N bytes
        if last_s == "" or int(last_s) == 0 or size == 0:
            raise RangeNotSatisfiable(f"unsatisfiable Range {header!r}")
        n = min(int(last_s), size)
        return ByteRange(size - n, size - 1, size)
    first = int(first_s)
    last = size - 1 if last_s == "" else min(int(last_s), size - 1)
    if first >= size or (last_s != "" and int(last_s) < first):
        raise RangeNotSatisfiable(f"Range {header!r} is outside 0-{size - 1}")
    return ByteRange(first, last, size)
