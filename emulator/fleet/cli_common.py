"""What the ``fleet`` command and its ``--scenario`` form share: exit codes, work dir.

Both ``cli.py`` (the fleet command, which hands ``--scenario`` runs over) and
``scenario_cli.py`` take these from here, so neither has to import the other to get
them: ``cli`` uses ``scenario_cli``, never the other way round.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emulator.fleet.scratch import scratch_dir
from emulator.fleet.spec import FleetSpecError

EXIT_OK, EXIT_EXPECTATION, EXIT_USAGE, EXIT_RUNTIME = 0, 1, 2, 3


def fresh_work_dir(args: argparse.Namespace) -> tuple[Path, bool]:
    """(work dir, whether to remove it at the end) for ``--work-dir``/``--keep``."""
    if args.work_dir is not None:
        path: Path = args.work_dir
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FleetSpecError(f"--work-dir {path}: must be a new or empty directory "
                                 "(device data of another run would mix with this one)")
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    return scratch_dir("dd-fleet-"), not args.keep
