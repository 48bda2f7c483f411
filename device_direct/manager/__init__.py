"""The device manager: the second data path (discover printers over SNMP, read, report).

Needs the ``manager`` extra (pysnmp). Sub-modules: :mod:`targets` (what to scan),
:mod:`vendors` and ``vendors/*.toml`` (vendor knowledge as data), :mod:`mib` and
:mod:`reading` (sans-I/O interpretation), :mod:`snmp` (the pysnmp edge), :mod:`scan`
(two-phase discovery), :mod:`cli` (``device-direct manager ...``).
"""

from __future__ import annotations
