"""What the ``fleet`` command and its ``--scenario`` form share: exit codes, work dir.

Both ``cli.py`` (the fleet command, which hands ``--scenario`` runs over) and
``scenario_cli.py`` take these from here, so neither has to import the other to get
them: ``cli`` uses ``scenario_cli``, never the other way round.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emulator.fleet.scratch import scratch_dir, sweep_orphans
from emulator.fleet.spec import FleetSpecError

EXIT_OK, EXIT_EXPECTATION, EXIT_USAGE, EXIT_RUNTIME = 0, 1, 2, 3
WORK_PREFIX = "dd-fleet-"  # a run's scratch work directory (and a Dask shard's)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before a run, a ``--report`` or ``--html-report`` that could not be written
    after it: a directory that does not exist, or a directory in the file's place. A run
    can take hours; finding that out at its end would lose what it found."""
    for option, path in (("--report", args.report),
                         ("--html-report", getattr(args, "html_report", None))):
        if path is None:
            continue
        if path.is_dir():
            raise FleetSpecError(f"{option} {path}: is a directory; give a file name")
        parent = path.parent
        if not parent.is_dir():
            raise FleetSpecError(f"{option} {path}: no directory {parent} to write it in")


def fresh_work_dir(args: argparse.Namespace) -> tuple[Path, bool]:
    """(work dir, whether to remove it at the end) for ``--work-dir``/``--keep``."""
    if args.work_dir is not None:
        path: Path = args.work_dir
        try:
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise FleetSpecError(f"--work-dir {path}: must be a new or empty directory "
                                     "(device data of another run would mix with this one)")
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FleetSpecError(f"--work-dir {path}: cannot use it: {exc.strerror}"
                                 ) from exc
        return path, False
    # A run killed outright (SIGKILL, the OOM killer) could not remove its directory:
    # swept up here, by the next run on this machine (--keep ones are never owned).
    sweep_orphans(WORK_PREFIX)
    return scratch_dir(WORK_PREFIX, owned=not args.keep), not args.keep
