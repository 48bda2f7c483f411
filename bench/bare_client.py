"""An HTTP client alone: Locust's device-day on uvloop, no agent.

A baseline for ``fleet_bench.py``, not a benchmark of its own: the same device-day as
its Locust users (build a payload zip from the sample, upload it with the device's
client certificate, poll actions, check firmware, over one new TLS connection that
verifies the server), on the fleet's event loop, and nothing else: no model, no outbox,
no journal. ``--client``:

- ``aiohttp`` (default): a library client, aiohttp's ``ClientSession`` (a session and
  connector per device-day). Until brief 23x this was the fleet's own stack.
- ``transport``: the device's own transport (``device_direct.transport.Transport``, its
  HTTP/1.1 in ``device_direct/core/http1.py`` and ``http_connection.py``), one per
  device-day, with the device's identity (its TLS context kept, as an agent keeps it):
  the fleet's HTTP stack without the agent, so the fleet's CPU per device-day less this
  one's is what the agents' own work costs.

    python bench/bare_client.py --port P --devices devices.json --ca bundle.pem \
        --sample sample.xml|payloads.json --seconds 15 --concurrency 32 \
        [--client aiohttp|transport]

``devices.json`` is the list ``fleet_bench.py`` hands Locust (serial, device_id, cert,
key). ``--sample`` is one device-data.xml, or a JSON list of them (the fleet's own
payloads, as ``fleet_bench.py`` hands them): device-day ``n`` sends the ``n``-th, round
robin. Each device's TLS context (and, for ``transport``, its identity) is made before the
first device-day, as a fleet device has its own from registration on. Prints one JSON
object: device_days, errors, seconds and cpu_s (the process's CPU), both from the first
device-day's start to the last one's end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import re
import ssl
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_direct.clock import SystemClock  # noqa: E402
from device_direct.errors import DeviceDirectError  # noqa: E402
from device_direct.identity import IdentityStore  # noqa: E402
from device_direct.tls_bundled import preferred  # noqa: E402
from device_direct.transport import Transport  # noqa: E402

FIRMWARE = {"model": "ColorMFP C8055", "version": "100.002.057"}


def load_samples(path: str | Path) -> list[str]:
    """The payloads to send: one device-data.xml, or a JSON list of them."""
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith(".json"):
        samples = json.loads(text)
        if not isinstance(samples, list) or not samples or not all(
                isinstance(x, str) for x in samples):
            raise SystemExit(f"{path}: expected a JSON list of device-data.xml texts")
        return samples
    return [text]


def payload(sample: str, serial: str, sequence: int) -> tuple[str, bytes]:
    """The Locust user's payload: the sample with this device's id, sequence and serial
    (the root's uploadId and sequence, the identity's serial: each the first of its kind)."""
    upload_id = str(uuid.uuid4())
    xml = re.sub(r'uploadId="[^"]+"', f'uploadId="{upload_id}"', sample, count=1)
    xml = re.sub(r'sequence="\d+"', f'sequence="{sequence}"', xml, count=1)
    xml = re.sub(r"<Serial>[^<]*</Serial>", f"<Serial>{serial}</Serial>", xml, count=1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("device-data.xml", xml)
    return upload_id, buf.getvalue()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    devices = json.loads(Path(args.devices).read_text(encoding="utf-8"))
    samples = load_samples(args.sample)
    contexts: dict[str, ssl.SSLContext] = {}  # one per device, as each agent keeps one
    identities: dict[str, IdentityStore] = {}  # the same for the transport (its context)
    done = {"device_days": 0, "errors": 0}
    first: list[float] = []  # perf_counter, process_time at the first device-day's start
    last = [0.0, 0.0]  # the same at the last one's end
    counter = iter(range(10**9))

    def context_for(dev: dict[str, str]) -> ssl.SSLContext:
        ctx = contexts.get(dev["serial"])
        if ctx is None:
            ctx = ssl.create_default_context(cafile=args.ca)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(dev["cert"], dev["key"])
            contexts[dev["serial"]] = ctx
        return ctx

    def began() -> None:
        first[:] = first or [time.perf_counter(), time.process_time()]

    def ended() -> None:
        last[:] = [time.perf_counter(), time.process_time()]

    async def device_days() -> None:
        while time.perf_counter() < stop_at:
            n = next(counter)
            dev = devices[n % len(devices)]
            began()
            upload_id, body = payload(samples[n % len(samples)], dev["serial"],
                                      200000 + n // len(devices))
            base = f"https://127.0.0.1:{args.port}/dd/v1/devices/{dev['device_id']}"
            headers = {"Content-Type": "application/zip", "Upload-Id": upload_id,
                       "Content-SHA256": hashlib.sha256(body).hexdigest()}
            ok = True
            # A session (and its connector) per device-day: a new TLS connection.
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=context_for(dev))) as session:
                async with session.post(base + "/uploads", data=body, headers=headers,
                                        server_hostname="localhost") as r:
                    await r.read()
                    ok &= r.status == 201
                async with session.get(base + "/actions", server_hostname="localhost") as r:
                    await r.read()
                    ok &= r.status == 200
                async with session.get(base + "/firmware", params=FIRMWARE,
                                       server_hostname="localhost") as r:
                    await r.read()
                    ok &= r.status in (200, 204)
            done["device_days" if ok else "errors"] += 1
            ended()

    clock = SystemClock()
    tls_library = preferred()  # the fleet's TLS library, as the fleet picks it
    url = f"https://127.0.0.1:{args.port}/"

    def transport_for(dev: dict[str, str]) -> Transport:
        identity = identities.get(dev["serial"])
        if identity is None:
            identity = identities[dev["serial"]] = IdentityStore(Path(dev["cert"]).parent)
        # The identity store keeps the context the first transport builds.
        return Transport(url, args.ca, "localhost", identity, clock, tls_library=tls_library)

    async def transport_days() -> None:
        while time.perf_counter() < stop_at:
            n = next(counter)
            dev = devices[n % len(devices)]
            began()
            upload_id, body = payload(samples[n % len(samples)], dev["serial"],
                                      200000 + n // len(devices))
            transport = transport_for(dev)
            ok = True
            try:
                ok &= (await transport.upload(body, upload_id)).status == "stored"
                await transport.poll_actions()
                await transport.check_firmware(FIRMWARE["model"], FIRMWARE["version"])
            except DeviceDirectError:
                ok = False
            finally:
                await transport.close()
            done["device_days" if ok else "errors"] += 1
            ended()

    # Every device's context first, outside the timed device-days.
    for dev in devices:
        if args.client == "transport":
            await transport_for(dev).close()
        else:
            context_for(dev)
    stop_at = time.perf_counter() + args.seconds
    days = transport_days if args.client == "transport" else device_days
    await asyncio.gather(*(days() for _ in range(args.concurrency)))
    return {**done, "seconds": round(last[0] - first[0], 3) if first else 0.0,
            "cpu_s": round(last[1] - first[1], 3) if first else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--devices", required=True, help="JSON list: serial, device_id, cert, key")
    ap.add_argument("--ca", required=True, help="the server's CA bundle")
    ap.add_argument("--sample", required=True,
                    help="the device-data.xml to send, or a JSON list of them")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--client", choices=("aiohttp", "transport"), default="aiohttp",
                    help="aiohttp's ClientSession (default), or the device's own transport")
    args = ap.parse_args()
    try:
        import uvloop
    except ImportError:
        raise SystemExit("uvloop is not installed (the emulator extra)") from None
    print(json.dumps(uvloop.run(run(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
