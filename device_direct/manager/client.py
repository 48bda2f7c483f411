"""The manager's HTTPS client: the device's :class:`~device_direct.transport.Transport`,
pointed at ``/dd/v1/managers/{id}`` instead of ``/dd/v1/devices/{id}``.

Everything else is the device's: TLS 1.2+ with the configured CA and server name, the
client certificate from :class:`~device_direct.identity.IdentityStore` (the manager's
own key and CSR), proxy support, timeouts, error translation, the JSON limits, and the
upload / poll-actions / report-action calls. Only registration differs (the manager's
identity instead of a printer's).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from device_direct.errors import AuthError, LocalProtocolError, RemoteProtocolError
from device_direct.transport import Transport, _field

REGISTRATION_FIELDS = ("hostname", "ip", "os", "app_version", "location", "contact_email")


class ManagerTransport(Transport):
    """A :class:`Transport` for a device manager (``/dd/v1/managers``)."""

    def _device_path(self, suffix: str) -> str:
        manager_id = self.device_id
        if manager_id is None:
            raise AuthError("the manager is not registered yet: register before other calls")
        return f"/managers/{quote(manager_id, safe='')}{suffix}"

    async def register_manager(self, info: dict[str, str], registration_key: str) -> str:
        """Register with a one-time key and the manager's identity; return its id."""
        missing = [k for k in REGISTRATION_FIELDS if not info.get(k)]
        if missing or not registration_key:
            raise LocalProtocolError("register: missing " + ", ".join(
                missing or ["registration_key"]))
        try:
            csr = self._identity.create_csr("device-manager")
        except ValueError as exc:
            raise LocalProtocolError(f"register: {exc}") from exc
        body: dict[str, Any] = {**{k: info[k] for k in REGISTRATION_FIELDS},
                                "registration_key": registration_key, "csr": csr}
        endpoint = "POST /dd/v1/managers/register"
        status, data = await self._json_call("POST", "/managers/register", endpoint,
                                             json_body=body)
        if status not in (200, 201):
            raise RemoteProtocolError(f"{endpoint}: unexpected status {status}")
        manager_id: str = _field(data, "manager_id", str, endpoint)
        self._store_certificate(data, endpoint, manager_id)
        return manager_id
