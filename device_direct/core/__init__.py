"""Sans-I/O core of Device Direct.

Pure functions and classes that take ``now`` and inputs and return decisions: payload
building and the privacy filter (:mod:`.payload`, :mod:`.privacy`), the daily schedule
(:mod:`.schedule`), retry backoff (:mod:`.retry`) and the outbox state machine
(:mod:`.outbox`). Nothing in here reads a clock, opens a file or a socket.
"""

from __future__ import annotations
