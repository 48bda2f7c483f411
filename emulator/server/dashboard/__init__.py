"""The reference server's dashboard (``/dashboard/``): see :mod:`.pages`,
:mod:`.manager_pages` and docs/web.md."""

from __future__ import annotations

from aiohttp import web

from emulator.server.dashboard import manager_pages, pages


def add_routes(app: web.Application) -> None:
    """Attach the dashboard's pages to the server's application (``/dashboard/``)."""
    pages.add_routes(app)
    manager_pages.add_routes(app)


__all__ = ["add_routes"]
