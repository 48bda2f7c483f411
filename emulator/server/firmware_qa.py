"""Firmware misbehaviour QA can switch on: bad manifests and hostile image downloads.

Theory of operation
-------------------
The catalog (``firmware.py``) only ever offers good, signed, unexpired, newer
manifests. To show that devices refuse everything else, QA can *force* the offer for a
model (:meth:`FirmwareQa.force_offer`): the next firmware checks of that model get
exactly that manifest and signature, whatever they say (another model, an older
version, expired, signed with another key, a hash that does not match the image). The
image bytes QA gives are served at the manifest's URL.

Image faults change how an image download is answered:

* ``truncate_next`` N: the next N downloads send half of what was asked for, then the
  connection is cut (a device must resume with ``Range``);
* ``extra_bytes`` K: every download sends K bytes past the end of the image, without a
  Content-Length (an "endless" body: a device must stop at the manifest's size).

Python API only (``ReferenceServer.firmware_qa``): tests and the fleet runner use it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from emulator.server.firmware import ByteRange

_CHUNK = 64 << 10


@dataclass(frozen=True, slots=True)
class ImageFault:
    """How image downloads misbehave. The default is not at all."""

    truncate_next: int = 0
    extra_bytes: int = 0

    def __post_init__(self) -> None:
        if self.truncate_next < 0:
            raise ValueError(f"truncate_next must be >= 0, got {self.truncate_next}")
        if not 0 <= self.extra_bytes <= 1 << 30:
            raise ValueError(f"extra_bytes must be within 0..2**30, got {self.extra_bytes}")


@dataclass(slots=True)
class FirmwareQa:
    """Forced offers, QA images and the image fault in force (mutable server state)."""

    offers: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    fault: ImageFault = ImageFault()
    truncated: int = 0  # downloads cut short so far (for tests)

    def force_offer(self, model: str, manifest: dict[str, Any], signature: str,
                    image: bytes | None = None) -> None:
        """Answer firmware checks of ``model`` with this manifest and signature."""
        if not isinstance(manifest, dict) or not isinstance(signature, str):
            raise ValueError("force_offer needs a manifest dict and a base64 signature")
        self.offers[model] = {"manifest": dict(manifest), "signature": signature}
        if image is not None:
            self.images[hashlib.sha256(image).hexdigest()] = image
            url = manifest.get("url")
            if isinstance(url, str) and url.rsplit("/", 1)[-1] not in self.images:
                # Served at the manifest's URL even when the manifest's hash lies.
                self.images[url.rsplit("/", 1)[-1].lower()] = image

    def set_image_fault(self, *, truncate_next: int = 0, extra_bytes: int = 0) -> ImageFault:
        """Replace the image fault."""
        self.fault = ImageFault(truncate_next=truncate_next, extra_bytes=extra_bytes)
        return self.fault

    def clear(self) -> None:
        """No forced offers, no QA images, no image fault."""
        self.offers.clear()
        self.images.clear()
        self.fault = ImageFault()

    def take_truncation(self) -> bool:
        """True if this download is to be cut short (uses up one)."""
        if self.fault.truncate_next <= 0:
            return False
        self.fault = replace(self.fault, truncate_next=self.fault.truncate_next - 1)
        self.truncated += 1
        return True


async def serve_faulty(request: web.Request, image: bytes, rng: ByteRange | None,
                       headers: dict[str, str], *, truncate: bool, extra: int
                       ) -> web.StreamResponse:
    """Send ``image`` (or its range) cut in half, or followed by ``extra`` bytes."""
    first, last = (rng.first, rng.last) if rng is not None else (0, len(image) - 1)
    body = image[first:last + 1]
    if rng is not None:
        headers = {**headers, "Content-Range": rng.content_range}
    response = web.StreamResponse(status=206 if rng is not None else 200, headers=headers)
    response.content_type = "application/octet-stream"
    if truncate:
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: max(1, len(body) // 2)])
        if request.transport is not None:
            request.transport.abort()
        return response
    response.enable_chunked_encoding()  # no Content-Length: only the device can stop it
    await response.prepare(request)
    try:
        for i in range(0, len(body), _CHUNK):
            await response.write(body[i:i + _CHUNK])
        sent = 0
        filler = b"\xee" * _CHUNK
        while sent < extra:
            n = min(_CHUNK, extra - sent)
            await response.write(filler[:n])
            sent += n
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass  # the device hung up, as it should
    return response
