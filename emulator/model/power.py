"""Power and engine states of the emulated device.

Theory of operation
-------------------
The device is in exactly one :class:`device_direct.model.PowerState`. Everything that
changes it is a :class:`PowerEvent`, and the only legal changes are the pairs in
``TRANSITIONS``; any other (state, event) pair is refused with ``DeviceStateError``
rather than ignored, so a caller that prints while the device is off finds out.

- OFF --power_on--> BOOTING --boot_ok--> READY (or --boot_faulted--> FAULTED when a
  fault that outlives a power cycle, such as paper still in the path, is active).
- READY --start_job--> PRINTING --end_job--> READY; a jam during a job: --fault-->.
- READY <--sleep/wake--> SLEEPING (energy saver); a fault may also strike an idle device.
- FAULTED --clear--> READY once the fault is cleared.
- shutdown (power_off) and restart (reboot) from any settled state; a power loss from
  any state at all, including mid-boot and mid-job, leaves the device OFF.
"""

from __future__ import annotations

import enum

from device_direct.model import PowerState
from emulator.model.errors import DeviceStateError


class PowerEvent(enum.Enum):
    POWER_ON = "power_on"
    BOOT_OK = "boot_ok"
    BOOT_FAULTED = "boot_faulted"
    START_JOB = "start_job"
    END_JOB = "end_job"
    FAULT = "fault"
    CLEAR = "clear"
    SLEEP = "sleep"
    WAKE = "wake"
    SHUTDOWN = "shutdown"
    RESTART = "restart"
    POWER_LOSS = "power_loss"


_S = PowerState
_E = PowerEvent
_SETTLED = (_S.READY, _S.SLEEPING, _S.FAULTED)

TRANSITIONS: dict[tuple[PowerState, PowerEvent], PowerState] = {
    (_S.OFF, _E.POWER_ON): _S.BOOTING,
    (_S.BOOTING, _E.BOOT_OK): _S.READY,
    (_S.BOOTING, _E.BOOT_FAULTED): _S.FAULTED,
    (_S.READY, _E.START_JOB): _S.PRINTING,
    (_S.PRINTING, _E.END_JOB): _S.READY,
    (_S.PRINTING, _E.FAULT): _S.FAULTED,
    (_S.READY, _E.FAULT): _S.FAULTED,
    (_S.SLEEPING, _E.FAULT): _S.FAULTED,
    (_S.READY, _E.SLEEP): _S.SLEEPING,
    (_S.SLEEPING, _E.WAKE): _S.READY,
    (_S.FAULTED, _E.CLEAR): _S.READY,
    **{(s, _E.SHUTDOWN): _S.OFF for s in _SETTLED},
    **{(s, _E.RESTART): _S.BOOTING for s in _SETTLED},
    **{(s, _E.POWER_LOSS): _S.OFF for s in PowerState},
}


def next_state(state: PowerState, event: PowerEvent) -> PowerState:
    """The state after ``event``; raises DeviceStateError for a pair not in the table."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise DeviceStateError(
            f"cannot {event.value.replace('_', ' ')} while the device is {state.value}"
        ) from None


def is_powered(state: PowerState) -> bool:
    """True when the controller runs (it answers commands): not OFF, not mid-boot."""
    return state in _SETTLED or state is _S.PRINTING
