"""One log line, not a traceback, for an HTTP request aiohttp's parser refused.

aiohttp answers a malformed request (a negative Content-Length, Content-Length beside
Transfer-Encoding, bytes that are not HTTP) with a 400 and logs it through
``aiohttp.server`` as an ERROR with the parser's traceback, as it would a bug. A
client's garbage is not the server's bug: :func:`quiet_bad_requests` turns each such
record into one INFO line naming the peer and what was wrong. The reference server,
the printer's web pages and its QA control API install it when they start.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

_LOGGER = "aiohttp.server"


class _BadRequestLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            what = next(iter(str(exc.message).strip().splitlines()), "") or type(exc).__name__
            record.msg, record.args = "%s: refused (%d %s)", (record.getMessage(), exc.code,
                                                              what.rstrip(":"))
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_FILTER = _BadRequestLine()


def quiet_bad_requests() -> None:
    """Install the filter on ``aiohttp.server`` (once, however often called)."""
    logger = logging.getLogger(_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
