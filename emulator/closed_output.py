"""Every emulator command exits quietly when the reader of its output goes away.

``python -m emulator device-ctl --port N state | head -1``: ``head`` reads one line and
closes the pipe; the next write (or the flush at exit) fails with ``BrokenPipeError``.
Python ignores SIGPIPE, so without this the user sees a traceback, or an "Exception
ignored ... BrokenPipeError" line at shutdown, for something they asked for.

:func:`run_with_closed_output_quiet` runs a CLI's ``main``, flushes standard output
while the error can still be caught, and on a closed pipe points standard output at
``/dev/null`` (so the interpreter's own flush at exit finds nothing to complain
about) and returns :data:`EXIT_OUTPUT_CLOSED`: 128 + SIGPIPE, what the shell reports
for any Unix tool stopped this way, as 130 is for Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE (13)


def run_with_closed_output_quiet(main: Callable[[], int]) -> int:
    """``main()``'s exit status, or :data:`EXIT_OUTPUT_CLOSED` when stdout was closed."""
    try:
        try:
            code = main()
        except SystemExit:  # argparse's --help and usage errors: flush them here too
            sys.stdout.flush()
            raise
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _stdout_to_devnull()
        return EXIT_OUTPUT_CLOSED


def _stdout_to_devnull() -> None:
    # What is left in the buffer goes nowhere instead of failing again at exit.
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # replaced or closed stdout (tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
