"""The reference server's dashboard (``/dashboard/``): see :mod:`.pages` and docs/web.md."""

from emulator.server.dashboard.pages import add_routes

__all__ = ["add_routes"]
