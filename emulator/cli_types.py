"""Argument types the emulator's commands share (argparse ``type=``)."""

from __future__ import annotations

import argparse


def port_number(text: str) -> int:
    """A TCP or UDP port argument: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number "
                                         "(0-65535; 0: any free port)")
    return port
