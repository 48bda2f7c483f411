"""The floor TLS itself sets: ``openssl s_time -new`` handshakes per second.

Shared by the benchmarks that compare against it (fleet, server); not a benchmark.
"""

from __future__ import annotations

import re
import shutil
import subprocess


def openssl_handshakes(port: int, seconds: int) -> float:
    """New full handshakes per second against 127.0.0.1:``port`` for ``seconds``."""
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is not installed (apt-get install openssl)")
    out = subprocess.run(
        ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)],
        capture_output=True, text=True, timeout=seconds * 4 + 30).stdout
    m = re.search(r"(\d+) connections in (\d+(?:\.\d+)?) real seconds", out)
    if m is None:
        raise SystemExit(f"cannot read openssl s_time output:\n{out}")
    return int(m.group(1)) / float(m.group(2))
