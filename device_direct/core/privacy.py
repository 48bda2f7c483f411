"""The privacy filter: what may leave the device in a payload.

Rules (DESIGN.md, "Payload"):

* by default no user names, job names, e-mail addresses or document data: the job log is
  left out of the payload entirely; with ``send_job_data`` consent it is included;
* the engineering (debug) log only with ``send_engineering`` consent;
* locked-down mode reports no IP addresses: IPv4, subnet mask, gateway and host name are
  left out, and IPv4 literals in free text are blanked;
* free text (descriptions, property values, the engineering log) is scrubbed of anything
  that looks like an e-mail address, and - unless job data may be sent - of the user and
  job names found in the job log, so personal data cannot leak through a description a
  printer happened to compose from a job ("Jam in job 'salary.xlsx' of alice").

The filter works on strings; :mod:`.payload` applies it to every text field it writes.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass

from device_direct.model import JobRecord

EMAIL_REPLACEMENT = "[e-mail removed]"
PERSONAL_REPLACEMENT = "[personal data removed]"
IP_REPLACEMENT = "[address removed]"

# Deliberately broad: a false positive costs a blanked word, a false negative leaks an
# address. Local part, @, at least one dot in the domain.
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
# Names shorter than this are not hunted in free text: blanking every "al" in a
# description would make it useless while protecting nothing identifiable.
_MIN_NAME_LEN = 3


@dataclass(frozen=True, slots=True)
class PrivacyPolicy:
    """What the customer consented to send (all off by default)."""

    send_job_data: bool = False
    send_engineering: bool = False
    locked_down: bool = False

    def __post_init__(self) -> None:
        for name in ("send_job_data", "send_engineering", "locked_down"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"PrivacyPolicy.{name} must be a bool")

    @property
    def sends_ip_addresses(self) -> bool:
        """Whether network addresses may be reported (not in locked-down mode)."""
        return not self.locked_down


class TextScrubber:
    """Scrubs free text according to a policy and the personal names of one snapshot."""

    __slots__ = ("_by_length", "_done", "_name_set", "_nameless", "_policy", "all_unchanged",
                 "unchanged")

    def __init__(self, policy: PrivacyPolicy, jobs: Iterable[JobRecord] = (),
                 texts: Iterable[str] = ()) -> None:
        """``texts``: free texts about to be scrubbed, when they are known in advance
        (a payload's). It only makes scrubbing them faster: any text may be scrubbed."""
        self._policy = policy
        self._name_set: set[str] = set() if policy.send_job_data else {
            value for job in jobs
            for value in (job.user.strip(), job.job_name.strip(), job.email.strip())
            if len(value) >= _MIN_NAME_LEN}
        # The names in scrubbing order, and their negated lengths: sorted when a text
        # first needs them (most payloads' texts are all known to hold none).
        self._by_length: tuple[tuple[str, ...], list[int]] | None = None
        self._done: dict[str, str] = {}  # a payload repeats many strings
        known, everything = _known(texts)
        nameless = _nameless(known, everything, self._name_set) if self._name_set else known
        self._nameless = nameless
        #: Those of ``texts`` that :meth:`scrub` returns as they are (no address, no
        #: name, no IPv4 literal when locked down): most of a payload's. A writer may
        #: use them without calling :meth:`scrub`.
        self.unchanged = _unchanged(nameless, everything if nameless is known else None,
                                    policy)
        #: Whether every one of ``texts`` is in ``unchanged`` (nothing in them to blank).
        self.all_unchanged = self.unchanged is known

    def scrub(self, text: str) -> str:
        """Return ``text`` with e-mail addresses and personal names blanked."""
        done = self._done.get(text)
        if done is not None:
            return done
        out = text
        if "@" in out:  # every address has one; most payload strings have none
            out = _EMAIL.sub(EMAIL_REPLACEMENT, out)
        # A text known to hold no name, and unchanged so far, has none to replace.
        if self._name_set and (out != text or text not in self._nameless):
            names, neg_lengths = self._by_length or self._sort_names()
            # Names longer than the text cannot be in it, and they come first in the
            # longest-first order, before any replacement could lengthen the text.
            for name in names[bisect.bisect_left(neg_lengths, -len(out)):]:
                if name in out:
                    out = out.replace(name, PERSONAL_REPLACEMENT)
        if self._policy.locked_down:
            out = _IPV4.sub(IP_REPLACEMENT, out)
        self._done[text] = out
        return out

    @property
    def _names(self) -> tuple[str, ...]:
        """The personal names, longest first (so "alice.smith" is blanked whole before
        "alice" is tried), then alphabetically."""
        return (self._by_length or self._sort_names())[0]

    def _sort_names(self) -> tuple[tuple[str, ...], list[int]]:
        names = tuple(sorted(self._name_set, key=lambda n: (-len(n), n)))
        self._by_length = names, [-len(n) for n in names]  # ascending, for bisect
        return self._by_length


def _known(texts: Iterable[str]) -> tuple[frozenset[str], str]:
    """The distinct strings of ``texts`` (anything else left out), and all of them
    joined by NULs (for looking through them all at once)."""
    items = texts if isinstance(texts, list | tuple) else list(texts)
    try:
        known = frozenset(items)
        return known, "\0".join(known)
    except TypeError:  # not only strings: rarely, so only then one by one
        known = frozenset(t for t in items if isinstance(t, str))
        return known, "\0".join(known)


def _unchanged(nameless: frozenset[str], everything: str | None,
               policy: PrivacyPolicy) -> frozenset[str]:
    """Those of ``nameless`` that no other rule of :meth:`TextScrubber.scrub` changes
    (``everything``: all of them joined by NULs, when the caller has it).

    Usually all of them: one look through all the texts at once says so (the separator
    cannot make or hide an address or an IPv4 literal), before any text by text."""
    if not nameless:
        return nameless
    if everything is None:
        everything = "\0".join(nameless)
    if "@" not in everything and not (policy.locked_down and _IPV4.search(everything)):
        return nameless
    return frozenset(t for t in nameless if "@" not in t
                     and not (policy.locked_down and _IPV4.search(t)))


def _nameless(known: frozenset[str], everything: str, names: set[str]) -> frozenset[str]:
    """Those of ``known`` (joined by NULs in ``everything``) in which none of ``names``
    occurs.

    A payload scrubs about a hundred texts against the names of the day's job log (often
    sixty): one search per name through all the texts at once finds the few names that
    occur anywhere, and only those are then looked for text by text. The separator
    cannot hide a name: a name found across it only makes the check stricter. Names
    with an "@" (the e-mail addresses of the log) are only looked for when there is one.
    """
    if not known:
        return known
    if "@" in everything:
        present = [n for n in names if n in everything]
    else:
        present = [n for n in names if "@" not in n and n in everything]
    if not present:  # the usual case
        return known
    return frozenset(t for t in known if not any(n in t for n in present))


def looks_like_email(text: str) -> bool:
    """Whether ``text`` contains something shaped like an e-mail address."""
    return _EMAIL.search(text) is not None
