"""A realistic DeviceSnapshot for payload and privacy tests, seeded with personal data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from device_direct.model import (
    Alert,
    Counters,
    DeviceSnapshot,
    Fault,
    FirmwareBank,
    FirmwareState,
    HfsiItem,
    Identity,
    JobKind,
    JobRecord,
    NetworkInfo,
    NvmSetting,
    PowerState,
    Property,
    Severity,
    Supply,
)

T0 = datetime(2026, 3, 29, 2, 0, tzinfo=UTC)

# Personal data planted in the snapshot: none of it may leave without consent.
USER = "alice.wonderland"
JOB_NAME = "Salary review Q3.xlsx"
JOB_EMAIL = "alice@example.org"
PROPERTY_EMAIL = "bob.admin@corp.example.com"
ALERT_EMAIL = "helpdesk@printers.example.net"
PERSONAL = (USER, JOB_NAME, JOB_EMAIL, PROPERTY_EMAIL, ALERT_EMAIL)
IP_ADDRESSES = ("192.168.17.42", "255.255.255.0", "192.168.17.1")
HOSTNAME = "mfp-floor3"


def make_snapshot(*, faults: int = 3, jobs: int = 2) -> DeviceSnapshot:
    return DeviceSnapshot(
        taken_at=T0,
        power=PowerState.READY,
        identity=Identity(
            manufacturer="Example",
            model="ColorMFP 7855",
            serial="XRX123456",
            product_code="7855-P",
            firmware={"system": "100.002.057", "network": "71.55.1", "engine": "63.22.0"},
            installed_options=("finisher", "fax"),
            install_date=date(2024, 5, 17),
            profile="color-mfp",
        ),
        network=NetworkInfo(
            mac="00:00:aa:12:34:56",
            ipv4=IP_ADDRESSES[0],
            subnet_mask=IP_ADDRESSES[1],
            gateway=IP_ADDRESSES[2],
            hostname=HOSTNAME,
        ),
        properties=(
            Property("scan-to-email.default-sender", PROPERTY_EMAIL),
            Property("memory", "4096 MB"),
            Property("admin-contact", f"call {ALERT_EMAIL} or ext 42"),
            Property("last-job", f"{JOB_NAME} by {USER}"),
        ),
        alerts=(
            Alert(
                index=2,
                severity=Severity.WARNING,
                code=1104,
                group=11,
                group_index=1,
                location=0,
                description=f"Black toner low; reorder via {ALERT_EMAIL}",
                raised_at=T0 - timedelta(hours=5),
            ),
        ),
        faults=tuple(
            Fault(
                code=f"07{i % 10}-{100 + i:03d}",
                subsystem="paper path",
                description=f"Jam in tray {i % 4 + 1}",
                at=T0 - timedelta(hours=i + 1),
                impressions=10_000 - i,
                stops_machine=i % 2 == 0,
            )
            for i in range(faults)
        ),
        counters=Counters(
            black_impressions=7000,
            color_impressions=3000,
            total_impressions=10_000,
            sheets=6000,
            duplex_sheets=4000,
            print_impressions=9000,
            copy_impressions=1000,
        ),
        supplies=(
            Supply(
                index=1,
                name="Black Toner Cartridge",
                type="toner",
                unit="impressions",
                capacity=5300,
                level=1060,
                colorant="black",
                serial="SN48178080E0000481",
                part_number="006R01509",
                lifetime_impressions=4240,
                installed_at=T0 - timedelta(days=40),
            ),
            Supply(
                index=2,
                name="Waste Toner Container",
                type="wasteToner",
                unit="percent",
                capacity=100,
                level=-3,
                supply_class=4,
            ),
        ),
        hfsi=(
            HfsiItem("950-800", "Transfer roll", 43_000, 100_000, 999_999, "mm-paper"),
            HfsiItem("950-801", "Fuser", 1_200_000, 17_500_000, 99_999_999, "a4-units", 1, T0),
        ),
        nvm=(NvmSetting("500-001", "Energy saver delay", 15, 15, 1, 240),),
        firmware=FirmwareState(
            active="A", banks=(FirmwareBank("A", "100.002.057"), FirmwareBank("B", ""))
        ),
        jobs=tuple(
            JobRecord(
                kind=JobKind.PRINT,
                at=T0 - timedelta(minutes=10 * (i + 1)),
                pages=3,
                impressions=3,
                user=USER,
                job_name=JOB_NAME,
                email=JOB_EMAIL,
            )
            for i in range(jobs)
        ),
    )
