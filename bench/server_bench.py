"""Reference server throughput: stored uploads per second vs raw TLS handshakes per second.

Starts the reference server in its own process (``python -m emulator.server.cli server
run``), registers a few hundred devices, then uploads realistic 5-20 KiB payload zips
for a fixed time, each on a NEW TLS connection with the device's client certificate (as
devices do), from asyncio tasks in this process. Then, against the same port in the
same run, ``openssl s_time -new`` measures full handshakes per second: the baseline an
upload cannot beat, since every upload pays one handshake plus the HTTP work and the
payload checks. Prints both and their ratio; the last line is a JSON object.

    .venv/bin/python bench/server_bench.py [--devices 300] [--seconds 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from io import BytesIO
from pathlib import Path

import aiohttp
from peers import openssl_handshakes, start_server  # bench/, beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.server.pki import make_csr  # noqa: E402

SAMPLE = (ROOT / "fixtures" / "payloads" / "sample-device-data.xml").read_text()


def build_payload(serial: str, sequence: int, rng: random.Random) -> tuple[str, bytes]:
    """A schema-valid zip of 5-20 KiB: the sample plus a device-sized NVM table."""
    upload_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    nvm = "".join(
        f'<Nvm id="{700 + i // 100:03d}-{i % 1000:03d}" name="Setting {i} {rng.random():.6f}" '
        f'value="{rng.randint(0, 9999)}" default="{rng.randint(0, 9999)}" min="0" '
        f'max="99999" protected="{"true" if i % 7 == 0 else "false"}"/>\n    '
        for i in range(rng.randint(160, 900))
    )
    xml = re.sub(r'uploadId="[^"]+"', f'uploadId="{upload_id}"', SAMPLE, count=1)
    xml = re.sub(r'sequence="\d+"', f'sequence="{sequence}"', xml, count=1)
    xml = xml.replace("<Serial>EMU8055001</Serial>", f"<Serial>{serial}</Serial>")
    xml = xml.replace("  </Usage>", "  " + nvm + "</Usage>")
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("device-data.xml", xml)
    return upload_id, buf.getvalue()


async def register_all(base: str, ca: Path, keys: list[str], work: Path
                       ) -> list[tuple[str, str, ssl.SSLContext]]:
    devices = []
    trust = ssl.create_default_context(cafile=str(ca))
    async with aiohttp.ClientSession() as s:
        for i, key in enumerate(keys):
            serial = f"BENCH{i:05d}"
            key_pem, csr = make_csr(serial)
            body = {"serial": serial, "model": "ColorMFP C8055", "mac": "00:00:aa:00:00:01",
                    "firmware": {"system": "1.0"}, "registration_key": key,
                    "csr": csr.decode()}
            async with s.post(base + "/dd/v1/register", json=body, ssl=trust) as r:
                reg = await r.json()
                if r.status != 201:
                    raise SystemExit(f"registration failed: {reg}")
            (work / f"{serial}.crt").write_text(reg["certificate"])
            (work / f"{serial}.key").write_bytes(key_pem)
            ctx = ssl.create_default_context(cafile=str(ca))
            ctx.load_cert_chain(work / f"{serial}.crt", work / f"{serial}.key")
            devices.append((serial, reg["device_id"], ctx))
    return devices


async def upload_load(base: str, devices: list[tuple[str, str, ssl.SSLContext]],
                      seconds: float, concurrency: int) -> tuple[int, int, float, list[int]]:
    rng = random.Random(7)
    # Payloads are built before the clock starts: the bench measures the server.
    queue = []
    for n in range(concurrency * 400):
        serial, device_id, ctx = devices[n % len(devices)]
        upload_id, zip_ = build_payload(serial, n // len(devices) + 1, rng)
        queue.append((device_id, ctx, upload_id, zip_))
    sizes = sorted(len(q[3]) for q in queue)
    stored = errors = 0
    next_item = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal stored, errors, next_item
        while time.perf_counter() < deadline and next_item < len(queue):
            device_id, ctx, upload_id, zip_ = queue[next_item]
            next_item += 1
            headers = {"Content-Type": "application/zip", "Upload-Id": upload_id,
                       "Content-SHA256": hashlib.sha256(zip_).hexdigest()}
            connector = aiohttp.TCPConnector(force_close=True, ssl=ctx)
            try:
                async with aiohttp.ClientSession(connector=connector) as s, s.post(
                    f"{base}/dd/v1/devices/{device_id}/uploads", data=zip_, headers=headers
                ) as r:
                    await r.read()
                    if r.status == 201:
                        stored += 1
                    else:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return stored, errors, time.perf_counter() - started, [sizes[0], sizes[-1]]




def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--openssl-seconds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state, work = Path(tmp) / "state", Path(tmp) / "devices"
        work.mkdir()
        keys = subprocess.run(
            [sys.executable, "-m", "emulator.server.cli", "server", "--state-dir", str(state),
             "make-key", "--count", str(args.devices)],
            cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
        proc, port = start_server(state)
        try:
            base = f"https://localhost:{port}"
            devices = asyncio.run(register_all(base, state / "pki" / "bundle.pem", keys, work))
            stored, errors, elapsed, sizes = asyncio.run(
                upload_load(base, devices, args.seconds, args.concurrency))
            handshakes = openssl_handshakes(port, args.openssl_seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    uploads_per_s = stored / elapsed
    print(f"devices registered:        {len(devices)}")
    print(f"zip sizes:                 {sizes[0]}..{sizes[1]} bytes")
    print(f"uploads stored:            {stored} in {elapsed:.1f}s ({errors} errors), "
          f"concurrency {args.concurrency}, new TLS connection each")
    print(f"uploads per second:        {uploads_per_s:.1f}")
    print(f"openssl s_time -new:       {handshakes:.1f} handshakes/s (same server, same port)")
    print(f"ratio uploads/handshakes:  {uploads_per_s / handshakes:.3f}")
    print(json.dumps({"uploads_per_s": round(uploads_per_s, 1),
                      "openssl_handshakes_per_s": round(handshakes, 1),
                      "ratio": round(uploads_per_s / handshakes, 3),
                      "errors": errors}))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
