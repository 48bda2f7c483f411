"""The configuration report, as text: what the device prints when asked for one."""

from __future__ import annotations

from device_direct.model import DeviceSnapshot


def configuration_report(snap: DeviceSnapshot, *, uptime_s: float) -> str:
    """Render the configuration report (identity, firmware, network, meters, supplies)."""
    ident, net, c = snap.identity, snap.network, snap.counters
    lines = [
        "CONFIGURATION REPORT",
        f"Printed: {snap.taken_at:%Y-%m-%d %H:%M:%S} UTC    Up: {int(uptime_s)} s",
        "",
        "[Device]",
        f"  Manufacturer     {ident.manufacturer}",
        f"  Model            {ident.model}",
        f"  Product code     {ident.product_code}",
        f"  Serial number    {ident.serial}",
        f"  Installed        {ident.install_date or '-'}",
        f"  Options          {', '.join(ident.installed_options) or '-'}",
        "",
        "[Firmware]",
        *(f"  {name:<16} {version}" for name, version in ident.firmware.items()),
        f"  Running bank     {snap.firmware.active}"
        f"{' (trial, not committed)' if snap.firmware.trial else ''}",
        *(f"  Bank {b.name}           {b.version or '(empty)'}" for b in snap.firmware.banks),
        "",
        "[Network]",
        f"  MAC address      {net.mac}",
        f"  IPv4 address     {net.ipv4} / {net.subnet_mask}",
        f"  Gateway          {net.gateway or '-'}",
        f"  Host name        {net.hostname or '-'}",
        f"  DNS domain       {net.domain or '-'}",
        f"  WPAD (DHCP 252)  {net.wpad_url or '-'}",
        "",
        "[Billing meters]",
        f"  Black impressions        {c.black_impressions:>12}",
        f"  Color impressions        {c.color_impressions:>12}",
        f"  Total impressions        {c.total_impressions:>12}",
        f"  Large impressions        {c.total_large_impressions:>12}",
        f"  Sheets                   {c.sheets:>12}",
        "",
        "[Supplies]",
        *(f"  {s.index:>2} {s.name:<28} {s.level:>6} / {s.capacity:<6} {s.unit:<11} {s.status}"
          for s in snap.supplies),
        "",
        "[Remote services]",
        "  Device Direct    (settings are reported by the remote-services module)",
        "",
    ]
    return "\n".join(lines)
