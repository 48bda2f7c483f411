"""PAC evaluation, in a child process, with pypac (dukpy) as an optional extra.

A PAC file is JavaScript fetched from the network, written by whoever answered the WPAD
query. It is run in a separate Python process, never in the agent:

* a PAC that loops forever is killed after ``timeout_s`` (a JavaScript engine cannot be
  interrupted from another thread; a process can), and CPU time and memory are capped
  with ``setrlimit`` in the child;
* the child gets the DNS answers the parent already has (from the injected resolver)
  and the device's own address; ``dnsResolve`` of any other name fails, so a PAC
  cannot probe the network and tests control every answer;
* ``dateRange``/``timeRange`` see the injected clock's time, not the host's.

The child speaks JSON on stdin/stdout: ``{"pac", "url", "host", "hosts", "my_ip", "now"}``
in, ``{"answer": str}`` or ``{"error": reason, "detail": str}`` out. pypac and dukpy are
only imported in the child; when they are missing the answer is
:class:`~device_direct.core.proxy_rules.ProxyDiscoveryError` with reason
``missing-extra`` and the command that installs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from device_direct.core.proxy_rules import ProxyDiscoveryError

INSTALL_HINT = "install the PAC extra: pip install 'device-direct[pac]' (pypac, dukpy)"
DEFAULT_TIMEOUT_S = 5.0
_MAX_OUTPUT = 64 * 1024  # an answer longer than this is not a proxy list
_CHILD_MEMORY = 512 << 20  # address space the child may grow to while running the PAC
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class PacEvaluator(Protocol):
    """Runs ``FindProxyForURL(url, host)`` of a PAC file and returns its answer string."""

    async def find_proxy(
        self,
        pac: str,
        url: str,
        host: str,
        *,
        hosts: Mapping[str, Sequence[str]],
        my_ip: str,
        now: datetime,
    ) -> str:
        """The raw answer (``"PROXY a:1; DIRECT"``); raises ProxyDiscoveryError."""
        ...


class SubprocessPacEvaluator:
    """Runs each PAC evaluation in a fresh, killable child Python process.

    ``command`` is the interpreter and its options (the running Python in isolated mode
    by default). ``timeout_s`` bounds the whole run, start-up included.
    """

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        command: Sequence[str] = (sys.executable, "-I"),
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not command:
            raise ValueError("command must name a Python interpreter")
        self._timeout_s = timeout_s
        self._command = tuple(command)

    async def find_proxy(
        self,
        pac: str,
        url: str,
        host: str,
        *,
        hosts: Mapping[str, Sequence[str]],
        my_ip: str,
        now: datetime,
    ) -> str:
        """Evaluate in a child; raises ProxyDiscoveryError (syntax, timeout, missing-extra)."""
        request = json.dumps(
            {
                "pac": pac,
                "url": url,
                "host": host,
                "hosts": {name: list(addrs) for name, addrs in hosts.items()},
                "my_ip": my_ip,
                "now": now.isoformat(),
                "cpu_s": int(self._timeout_s) + 1,
            }
        ).encode()
        bootstrap = (
            f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
            "from device_direct.pac import child_main; child_main()"
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command,
                "-c",
                bootstrap,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ProxyDiscoveryError(
                f"cannot start the PAC evaluator {self._command[0]}: {exc}", reason="missing-extra"
            ) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(request), self._timeout_s)
        except TimeoutError:
            raise ProxyDiscoveryError(
                f"FindProxyForURL did not answer within {self._timeout_s:g} s; the PAC "
                "file was stopped",
                reason="timeout",
            ) from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        return _read_reply(out, err, proc.returncode)


def _read_reply(out: bytes, err: bytes, returncode: int | None) -> str:
    if len(out) > _MAX_OUTPUT:
        raise ProxyDiscoveryError(
            f"FindProxyForURL answered with more than {_MAX_OUTPUT // 1024} KiB: not a proxy "
            "list", reason="answer")
    try:
        reply = json.loads(out[:_MAX_OUTPUT]) if out else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        if returncode is not None and -returncode == getattr(signal, "SIGXCPU", None):
            raise ProxyDiscoveryError(
                "FindProxyForURL used up its CPU time; the PAC file was stopped", reason="timeout"
            )
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise ProxyDiscoveryError(
            f"the PAC evaluator failed (exit {returncode}): {tail[0]}", reason="syntax"
        )
    if "answer" in reply:
        answer = reply["answer"]
        return answer if isinstance(answer, str) else ""
    reason = str(reply.get("error", "syntax"))
    detail = str(reply.get("detail", ""))
    if reason == "missing-extra":
        raise ProxyDiscoveryError(f"{detail}; {INSTALL_HINT}", reason=reason)
    raise ProxyDiscoveryError(detail or "the PAC file could not be run", reason=reason)


# -- the child ------------------------------------------------------------------------------


def _fake_dns(hosts: Mapping[str, list[str]], my_ip: str) -> None:
    """Make every name lookup in this (child) process answer from ``hosts`` only."""
    import socket

    table = {name.lower().rstrip("."): addrs for name, addrs in hosts.items()}
    table["device.invalid"] = [my_ip] if my_ip else []

    def lookup(name: object) -> list[str]:
        key = str(name).lower().rstrip(".")
        addrs = table.get(key)
        if addrs is None:
            try:  # an address literal resolves to itself
                socket.inet_pton(socket.AF_INET6 if ":" in key else socket.AF_INET, key)
                return [key]
            except OSError:
                pass
        if not addrs:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: not known to the PAC sandbox")
        return addrs

    def gethostbyname(name: str) -> str:
        return lookup(name)[0]

    def gethostbyname_ex(name: str) -> tuple[str, list[str], list[str]]:
        return name, [], lookup(name)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        result = []
        for addr in lookup(host):
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, 0, 0, 0) if family == socket.AF_INET6 else (addr, 0)
            result.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return result

    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex
    socket.getaddrinfo = getaddrinfo
    socket.gethostname = lambda: "device.invalid"


def _limit_resources(cpu_s: int) -> None:
    try:
        import resource
    except ImportError:  # not on POSIX: the parent's timeout still applies
        return
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (_CHILD_MEMORY, _CHILD_MEMORY))


def _evaluate(request: dict[str, Any]) -> dict[str, str]:
    try:
        import pypac.parser as pac_parser  # type: ignore[import-untyped]
        import pypac.parser_functions as pac_functions  # type: ignore[import-untyped]
    except ImportError as exc:
        return {"error": "missing-extra", "detail": f"PAC support is not installed ({exc})"}
    _fake_dns(request.get("hosts", {}), str(request.get("my_ip", "")))
    now = datetime.fromisoformat(str(request["now"]))

    def fixed_now(utc: bool = False) -> datetime:
        return now if utc else now.replace(tzinfo=None)

    pac_functions._now = fixed_now
    _limit_resources(int(request.get("cpu_s", 10)))
    try:
        pac = pac_parser.PACFile(str(request["pac"]))
    except pac_parser.MalformedPacError as exc:
        return {"error": "syntax", "detail": f"the PAC file is not valid JavaScript: {exc}"}
    try:
        answer = pac.find_proxy_for_url(str(request["url"]), str(request["host"]))
    except Exception as exc:  # whatever the script throws is the script's fault
        return {"error": "syntax", "detail": f"FindProxyForURL failed: {exc}"}
    if answer is None:
        return {"answer": ""}
    if not isinstance(answer, str):
        return {"error": "answer", "detail": f"FindProxyForURL returned {type(answer).__name__}"}
    return {"answer": answer}


def child_main() -> None:
    """Entry point of the child process: one JSON request on stdin, one reply on stdout."""
    try:
        request = json.loads(sys.stdin.buffer.read())
        reply = _evaluate(request)
    except MemoryError:
        reply = {"error": "syntax", "detail": "the PAC file used too much memory"}
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()


def pac_support_available() -> bool:
    """Whether pypac and dukpy can be imported here (auto mode needs them)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("pypac", "dukpy"))
