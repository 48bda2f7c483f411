"""Many emulated printers with their real agents on one virtual clock; sharding; demo.

Entry points: :func:`emulator.fleet.runner.run_fleet` (Python),
``emulator.fleet.cli.add_fleet_parser`` / ``run_fleet_cli`` / ``run_demo`` (command line).
"""

from __future__ import annotations
