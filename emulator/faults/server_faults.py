"""Server-side scenario faults: 5xx bursts, slow answers, dropped answers, bad
certificates, and firmware campaigns (good or bad images), on the reference server.

The server holds one :class:`~emulator.server.faults.FaultPlan`; scenario windows may
overlap, so this keeps the windows in force as *layers* and recomputes the plan from
them whenever one opens or closes: the highest fail fraction and latency win, the
newest certificate fault wins, and one-shot counts (``fail_next``, ``drop_next``) are
added to what the plan has not used up yet.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from emulator.errors import ScenarioError
from emulator.faults.timeline import Step
from emulator.server.app import ReferenceServer
from emulator.server.firmware import make_manifest, sign_manifest

CAMPAIGN_DAYS = 30  # how long a campaign's manifest stays valid

Later = Callable[[float, Callable[[], None]], None]  # (minutes, action) -> None


class ServerFaults:
    """Applies server steps of a timeline to ``server``."""

    def __init__(self, server: ReferenceServer, seed: int,
                 models: Mapping[str, str] | None = None) -> None:
        self.server = server
        self.seed = seed
        self.models = dict(models or {})  # profile name -> model name in the fleet
        self.layers: dict[int, dict[str, Any]] = {}
        self.campaigns: list[dict[str, Any]] = []

    def apply(self, step: Step, later: Later) -> None:
        """Carry out one server step; windows close through ``later``."""
        p = step.params
        kind = step.kind
        if kind == "firmware_campaign":
            self._campaign(p["version"], p["image"], p["size_bytes"], p.get("profile"))
            return
        if kind == "server_drop":
            self._set(add_drop=p["drop_next"])
            return
        layer: dict[str, Any] = {}
        add_fail = 0
        if kind == "server_5xx":
            add_fail = p["fail_next"]
            if p["fail_fraction"]:
                layer["fail_fraction"] = p["fail_fraction"]
        elif kind == "server_slow":
            layer["latency_ms"] = p["latency_ms"]
        elif kind == "server_cert":
            layer["tls"] = p["mode"]
        else:  # pragma: no cover - the scenario reader knows every kind
            raise ScenarioError(f"{step.source}: not a server fault: {kind}")
        if layer:
            self.layers[step.order] = layer
        self._set(add_fail=add_fail)
        if layer and p.get("minutes") is not None:
            def close() -> None:
                self.layers.pop(step.order, None)
                self._set()

            later(p["minutes"], close)

    def _set(self, *, add_fail: int = 0, add_drop: int = 0) -> None:
        current = self.server.faults
        layers = [self.layers[k] for k in sorted(self.layers)]
        tls = [la["tls"] for la in layers if "tls" in la]
        self.server.set_fault(
            fail_next=current.fail_next + add_fail,
            fail_fraction=max((la.get("fail_fraction", 0.0) for la in layers), default=0.0),
            latency_ms=max((la.get("latency_ms", 0) for la in layers), default=0),
            drop_next=current.drop_next + add_drop,
            tls=tls[-1] if tls else "none")

    def _campaign(self, version: str, image_kind: str, size: int, profile: str | None) -> None:
        rng = random.Random(f"firmware:{self.seed}:{version}")
        image = rng.randbytes(size)
        models = sorted({m for prof, m in self.models.items() if profile in (None, prof)})
        if not models:
            raise ScenarioError(f"firmware campaign {version}: no device of profile "
                                f"{profile!r} in the fleet")
        server = self.server
        now = server.clock.now()
        for model in models:
            # A new campaign replaces the model's last one, good or bad.
            server.firmware_qa.offers.pop(model, None)
            if image_kind == "good":
                server.publish_firmware(model, version, image,
                                        expires_in_s=CAMPAIGN_DAYS * 86400)
                continue
            manifest = make_manifest(model, version, image,
                                     expires_at=now + timedelta(days=CAMPAIGN_DAYS))
            served = image
            if image_kind == "corrupt":
                # The build server signed the right hash; the image on the download
                # server got damaged (one byte) afterwards.
                damaged = bytearray(image)
                damaged[len(damaged) // 2] ^= 0xFF
                served = bytes(damaged)
                signature = sign_manifest(manifest, server.pki.firmware_key)
            else:  # bad-signature: signed with a key the devices do not pin
                key = ed25519.Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
                signature = sign_manifest(manifest, key)
            server.firmware_qa.force_offer(model, manifest, signature, image=served)
        self.campaigns.append({"version": version, "image": image_kind, "models": models})
