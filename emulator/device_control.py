"""A small local control API for one running emulated device (QA), and its CLI.

``python -m emulator device`` serves it on 127.0.0.1 (never another address) and prints
its port. JSON over HTTP:

=======  =================  ===========================================================
GET      /state             power, identity, meters, supplies, alerts, faults, firmware,
                            and the agent's status
POST     /fault             ``{"code": "075-135"}`` a catalog fault, or ``{}`` a jam
POST     /clear             clear the active fault and press Continue (operator at the panel)
POST     /power             ``{"state": "off" | "on"}`` an orderly power off / on
POST     /power-loss        the plug is pulled: nothing unpersisted survives; the
                            device comes back up (and its agent restarts from disk)
POST     /print             ``{"pages": 3, "color": true, "duplex": false, "copies": 1}``
POST     /send-now          the agent syncs at once
=======  =================  ===========================================================

Errors are ``{"error": "..."}`` with 400 (bad request) or 409 (not possible now, e.g.
printing while off). ``python -m emulator device-ctl --port N COMMAND`` is the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from device_direct.agent import Agent
from device_direct.errors import DeviceDirectError
from device_direct.model import JobKind, PrintJob
from emulator.errors import EmulatorError
from emulator.http_log import quiet_bad_requests
from emulator.model.device import EmulatedDevice


class ControlledDevice(Protocol):
    """What the control API drives: a running emulated device and its agent.

    ``device_runner.DeviceRunner`` is one; this module never imports it (the runner's
    command line uses :func:`serve_control`, so the dependency goes that way only).
    """

    @property
    def device(self) -> EmulatedDevice | None: ...

    @property
    def agent(self) -> Agent | None: ...

    async def power_off(self) -> None: ...

    async def power_on(self) -> None: ...

    async def power_loss(self) -> None: ...


RUNNER: web.AppKey[ControlledDevice] = web.AppKey("runner")
SHUTDOWN_TIMEOUT_S = 2.0  # how long a stop waits for requests still running
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def state_of(runner: ControlledDevice) -> dict[str, Any]:
    """The device (and agent) state as JSON."""
    assert runner.device is not None
    snap = runner.device.snapshot()
    doc = _jsonable({
        "power": snap.power, "identity": snap.identity, "counters": snap.counters,
        "supplies": snap.supplies, "alerts": snap.alerts, "faults": snap.faults,
        "firmware": snap.firmware, "hfsi": snap.hfsi,
    })
    doc["agent"] = runner.agent.status() if runner.agent is not None else None
    return dict(doc)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        doc = await request.json()
    except (ValueError, LookupError) as exc:  # not JSON, not UTF-8, an unknown charset
        raise web.HTTPBadRequest(text=json.dumps({"error": f"body is not JSON: {exc}"}),
                                 content_type="application/json") from exc
    if not isinstance(doc, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}),
                                 content_type="application/json")
    return doc


def _fail(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _state(request: web.Request) -> web.Response:
    return web.json_response(state_of(request.app[RUNNER]))


async def _fault(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    assert runner.device is not None
    body = await _body(request)
    code = body.get("code")
    if code is not None and not isinstance(code, str):
        return _fail(400, "'code' must be a chain-link code like 075-135")
    fault = runner.device.inject_fault(code) if code else runner.device.jam()
    return web.json_response({"fault": _jsonable(fault)})


async def _clear(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    assert runner.device is not None
    runner.device.clear_fault()
    runner.device.console.press_continue()  # an operator message (PJL OPMSG) goes too
    return web.json_response({"power": runner.device.power.value})


async def _power(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    state = (await _body(request)).get("state")
    if state == "off":
        await runner.power_off()
    elif state == "on":
        await runner.power_on()
    else:
        return _fail(400, "'state' must be \"off\" or \"on\"")
    assert runner.device is not None
    return web.json_response({"power": runner.device.power.value})


async def _power_loss(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    await runner.power_loss()
    assert runner.device is not None
    return web.json_response({"power": runner.device.power.value})


async def _print(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    assert runner.device is not None
    body = await _body(request)
    try:
        job = PrintJob(kind=JobKind.PRINT, pages=int(body.get("pages", 1)),
                       copies=int(body.get("copies", 1)), duplex=bool(body.get("duplex")),
                       color=bool(body.get("color")), job_name="qa-control")
        if job.pages < 1 or job.copies < 1 or job.pages * job.copies > 10_000:
            return _fail(400, "'pages' and 'copies' must be >= 1 (at most 10,000 in all)")
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: 1e999 is inf
        return _fail(400, f"bad print job: {exc}")
    result = await runner.device.print_job(job)
    return web.json_response(_jsonable(result))


async def _send_now(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    if runner.agent is None:
        return _fail(409, "this device runs without Device Direct (--no-agent)")
    runner.agent.send_now("on-demand")
    return web.json_response({"requested": True})


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except (EmulatorError, DeviceDirectError) as exc:
        return _fail(409, str(exc))


def make_app(runner: ControlledDevice) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=64 * 1024)
    app[RUNNER] = runner
    app.router.add_get("/state", _state)
    app.router.add_post("/fault", _fault)
    app.router.add_post("/clear", _clear)
    app.router.add_post("/power", _power)
    app.router.add_post("/power-loss", _power_loss)
    app.router.add_post("/print", _print)
    app.router.add_post("/send-now", _send_now)
    return app


async def serve_control(runner: ControlledDevice, port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve the control API on 127.0.0.1:``port``; returns the runner and the port."""
    # A request may be waiting on the device (a power off behind a long print job):
    # at shutdown it is cancelled after a moment instead of aiohttp's default 60 s.
    quiet_bad_requests()
    app_runner = web.AppRunner(make_app(runner), access_log=None,
                               shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await app_runner.setup()
    site = web.TCPSite(app_runner, "127.0.0.1", port)
    try:
        await site.start()
    except OSError as exc:
        await app_runner.cleanup()
        raise EmulatorError(f"cannot listen on tcp/127.0.0.1:{port} (the QA control API, "
                            f"--control-port): {exc}") from exc
    return app_runner, int(app_runner.addresses[0][1])


# -- CLI ------------------------------------------------------------------------------------


def add_control_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "device-ctl", help="control a running emulated device (QA): faults, power, print",
        description="Talk to the control API of a running `python -m emulator device`.")
    p.add_argument("--port", type=int, required=True,
                   help="the control port the device printed at start")
    sub = p.add_subparsers(dest="ctl", required=True, metavar="COMMAND")
    sub.add_parser("state", help="print the device's state as JSON")
    f = sub.add_parser("fault", help="inject a fault (a jam when no code is given)")
    f.add_argument("code", nargs="?", help="chain-link code from the profile's catalog")
    sub.add_parser("clear", help="clear the active fault and press Continue on the panel")
    pw = sub.add_parser("power", help="power the device off or on")
    pw.add_argument("state", choices=("off", "on"))
    sub.add_parser("power-loss", help="pull the plug (and come back up)")
    pr = sub.add_parser("print", help="print a job")
    pr.add_argument("--pages", type=int, default=1)
    pr.add_argument("--copies", type=int, default=1)
    pr.add_argument("--color", action="store_true")
    pr.add_argument("--duplex", action="store_true")
    sub.add_parser("send-now", help="make the agent sync at once")
    return p


async def _call(port: int, method: str, path: str, body: dict[str, Any] | None) -> int:
    async with aiohttp.ClientSession() as session, session.request(
        method, f"http://127.0.0.1:{port}{path}", json=body
    ) as r:
        doc = await r.json()
        print(json.dumps(doc, indent=2, sort_keys=True))
        return EXIT_OK if r.status < 400 else EXIT_FAILED


def run_control_cli(args: argparse.Namespace) -> int:
    """``python -m emulator device-ctl``: exit 0 done, 1 refused, 3 device not reachable."""
    routes: dict[str, tuple[str, str, dict[str, Any] | None]] = {
        "state": ("GET", "/state", None),
        "fault": ("POST", "/fault", {"code": getattr(args, "code", None)}),
        "clear": ("POST", "/clear", None),
        "power": ("POST", "/power", {"state": getattr(args, "state", None)}),
        "power-loss": ("POST", "/power-loss", None),
        "print": ("POST", "/print", {"pages": getattr(args, "pages", 1),
                                     "copies": getattr(args, "copies", 1),
                                     "color": getattr(args, "color", False),
                                     "duplex": getattr(args, "duplex", False)}),
        "send-now": ("POST", "/send-now", None),
    }
    method, path, body = routes[args.ctl]
    try:
        return asyncio.run(_call(args.port, method, path, body))
    except aiohttp.ClientError as exc:
        print(f"error: no emulated device answers on 127.0.0.1:{args.port} ({exc})",
              file=sys.stderr)
        return 3
