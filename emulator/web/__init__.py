"""The emulated printer's embedded web server (status, supplies, remote services, QA).

See ``docs/web.md`` for the pages and their URLs, and :mod:`emulator.web.server`.
"""

from emulator.web.remote_settings import with_saved_settings
from emulator.web.server import PrinterWebServer

__all__ = ["PrinterWebServer", "with_saved_settings"]
