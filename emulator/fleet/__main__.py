"""``python -m emulator.fleet``: the fleet runner on its own (shards use this)."""

from __future__ import annotations

import sys

from emulator.closed_output import run_with_closed_output_quiet
from emulator.fleet.cli import main

if __name__ == "__main__":
    sys.exit(run_with_closed_output_quiet(main))
