"""``server run --metrics-port P``: the reference server's side, for Prometheus.

Counted by a middleware (:func:`instrument` adds it to the server's app before it
starts): requests by route and status, their latency, uploads by outcome. Read from the
database at scrape time: devices registered and uploads stored. ``/metrics`` is served
on its own port by a small aiohttp app on the server's event loop, so a scrape reads the
database from the loop's thread, as every request does.

Metrics (prefix ``ddserver_``): ``requests_total{route,status}``,
``request_seconds{route}`` (histogram), ``uploads_total{outcome}`` (stored, duplicate,
rejected; devices' and managers' uploads), ``devices`` and ``uploads_stored`` (from the
database: devices' and managers' uploads, like ``uploads_total``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from device_direct.clock import SystemClock
from emulator.server.app import ReferenceServer

_WALL = SystemClock()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Stored(Collector):
    def __init__(self, server: ReferenceServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        devices = GaugeMetricFamily("ddserver_devices", "Devices registered")
        devices.add_metric([], len(self.server.storage.devices()))
        yield devices
        stored = GaugeMetricFamily("ddserver_uploads_stored",
                                   "Uploads in the database (devices' and managers')")
        stored.add_metric([], self.server.storage.uploads_count() + self._manager_uploads())
        yield stored

    def _manager_uploads(self) -> int:
        # uploads_total counts the managers' uploads too (their route ends in /uploads);
        # their table is made when the server starts, and a scrape may come before.
        storage = self.server.storage
        if not storage.query("SELECT 1 FROM sqlite_master WHERE name='manager_uploads'"):
            return 0
        return int(storage.query("SELECT COUNT(*) AS c FROM manager_uploads")[0]["c"])


class ServerMetrics:
    """The server's metrics registry, and the middleware that feeds it."""

    def __init__(self, server: ReferenceServer) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ddserver_requests", "Requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("ddserver_request_seconds", "Time to answer a request",
                                 ["route"], registry=self.registry)
        self.uploads = Counter("ddserver_uploads", "Uploads by outcome", ["outcome"],
                               registry=self.registry)
        self.registry.register(_Stored(server))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = _WALL.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            info = request.match_info.route.resource
            route = info.canonical if info is not None else "unmatched"
            self.requests.labels(route, str(status)).inc()
            self.latency.labels(route).observe(_WALL.monotonic() - started)
            if request.method == "POST" and route.endswith("/uploads"):
                outcome = {201: "stored", 200: "duplicate"}.get(status)
                if outcome is None and 400 <= status < 500:
                    outcome = "rejected"
                if outcome is not None:
                    self.uploads.labels(outcome).inc()


def instrument(server: ReferenceServer) -> ServerMetrics:
    """Have ``server`` (not started yet) count its requests; the metrics to serve."""
    metrics = ServerMetrics(server)
    make_app = server.make_app

    def make_counted_app() -> web.Application:
        app = make_app()
        app.middlewares.insert(0, metrics.middleware)  # outermost: sees every answer
        return app

    server.make_app = make_counted_app  # type: ignore[method-assign]
    return metrics


async def serve_metrics(metrics: ServerMetrics, port: int, host: str = "127.0.0.1"
                        ) -> tuple[web.AppRunner, int]:
    """Serve ``/metrics`` (plain HTTP) on ``host:port``; the runner and the port."""
    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ValueError(f"--metrics-port {port}: cannot listen on {host}:{port}: {exc}"
                         ) from exc
    return runner, int(runner.addresses[0][1])
