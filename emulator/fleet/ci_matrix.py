"""CI matrices without Dask: ``--shard`` from the runner's environment, and merging.

``--shard`` with no value takes this machine's part from the variables the usual CI
matrix runners set (:func:`shard_from_env`); each machine writes its ``--report``, and
``python -m emulator fleet merge-reports REPORT...`` joins them (:func:`merge_files`) into
one summary, one JSON report and one exit code, refusing reports of different runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from emulator.fleet.report import FleetReport, merge_reports
from emulator.fleet.spec import FleetSpecError, Shard

# (index variable, count variable or None, whether the index counts from 0)
_SOURCES: tuple[tuple[str, str | None, bool], ...] = (
    ("JOB_COMPLETION_INDEX", None, True),  # Kubernetes Indexed Job; count: --shard-count
    ("CI_NODE_INDEX", "CI_NODE_TOTAL", False),  # GitLab CI `parallel:`
)


def shard_from_env(env: Mapping[str, str], count: int | None) -> Shard:
    """The shard the CI environment ``env`` names; ``count`` is ``--shard-count``."""
    for index_var, count_var, zero_based in _SOURCES:
        raw = env.get(index_var)
        if raw is None:
            continue
        total: int | str | None = count
        source = "--shard-count"
        if count_var is not None and count is None:
            total, source = env.get(count_var), count_var
        if total is None:
            raise FleetSpecError(f"--shard: {index_var} is set; give the number of shards "
                                 "with --shard-count K")
        try:
            i, k = int(raw) + (1 if zero_based else 0), int(total)
        except ValueError:
            raise FleetSpecError(f"--shard: {index_var}={raw!r} / {source}={total!r} are "
                                 "not whole numbers") from None
        try:
            return Shard(i, k)
        except (FleetSpecError, ValueError) as exc:
            raise FleetSpecError(f"--shard: from {index_var}={raw} and {source}={total}: "
                                 f"{exc}") from None
    names = ", ".join(v for v, _, _ in _SOURCES)
    raise FleetSpecError(f"--shard without i/K: none of {names} is set (is this a CI "
                         "matrix job?); give --shard i/K")


def merge_files(paths: Sequence[Path]) -> FleetReport:
    """Read shard reports and merge them; a clear error for any that does not fit."""
    if not paths:
        raise FleetSpecError("merge-reports: give the shard reports to merge")
    parts: list[FleetReport] = []
    for path in paths:
        try:
            parts.append(FleetReport.from_json(json.loads(path.read_text("utf-8"))))
        except OSError as exc:
            raise FleetSpecError(f"merge-reports: {path}: cannot read: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise FleetSpecError(f"merge-reports: {path}: not a fleet report: {exc}") from exc
    first, first_path = parts[0], paths[0]
    for part, path in zip(parts[1:], paths[1:], strict=True):
        for what, mine, theirs in (("seed", part.seed, first.seed),
                                   ("devices", part.devices, first.devices),
                                   ("days", part.days, first.days),
                                   ("mix", part.mix, first.mix),
                                   ("actions", part.actions, first.actions)):
            if mine != theirs:
                raise FleetSpecError(f"merge-reports: {path} is of another run than "
                                     f"{first_path}: {what} {mine!r} != {theirs!r}")
    seen: dict[str, Path] = {}
    for part, path in zip(parts, paths, strict=True):
        for shard in part.shards:
            if shard in seen:
                raise FleetSpecError(f"merge-reports: {path} and {seen[shard]} both hold "
                                     f"shard {shard}: give each shard's report once")
            seen[shard] = path
    counts: dict[str, int] | None = None
    if all(p.server_uploads is not None for p in parts):
        counts = {}
        for p in parts:
            assert p.server_uploads is not None
            counts.update(p.server_uploads)
    return merge_reports(parts, wall_s=max(p.wall_s for p in parts), server_uploads=counts)
