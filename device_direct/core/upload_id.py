"""Upload-Ids: the lower-case version-4 UUID strings the wire contract names each
payload by (also exported by :mod:`.payload`).

A module of their own, with nothing but ``re``: the transport checks the ids it sends
without importing the payload builder."""

from __future__ import annotations

import re

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_upload_id(value: object) -> bool:
    """Whether ``value`` is a lower-case UUID string as the wire contract wants."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


_UUID_V4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))  # the variant and version bits
_UUID_V4_SET = (0x8000 << 48) | (4 << 76)  # RFC 4122 variant, version 4


def new_upload_id(bits: int) -> str:
    """A version-4 UUID string from 128 caller-supplied random bits: what
    ``str(uuid.UUID(int=bits, version=4))`` gives, without its object (daily)."""
    h = f"{bits & ((1 << 128) - 1) & _UUID_V4_CLEAR | _UUID_V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
