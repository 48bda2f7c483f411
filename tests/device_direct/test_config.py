"""Agent config: defaults, overrides, and errors that name the file and the key."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import device_direct.config as config_module
from device_direct.config import AgentConfig, MaintenanceWindow, load_config
from device_direct.errors import ConfigError

MINIMAL = """
[server]
url = "https://dd.example.com"

[device]
data_dir = "state"
"""


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def ed25519_pem() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def test_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.server.server_name == "dd.example.com"
    assert cfg.server.port == 443
    assert cfg.device.data_dir == tmp_path / "state"
    assert cfg.device.time_zone == "UTC"
    assert cfg.schedule.upload_time == time(2, 0)
    assert cfg.schedule.missed == "skip"
    assert cfg.services.enabled and cfg.services.security_mode == "normal"
    assert cfg.services.privacy.send_job_data is False
    assert cfg.outbox.budget_bytes == 8 << 20
    assert cfg.retry.backoff().band == 5.0
    assert cfg.proxy.mode == "off"
    assert cfg.alerts.smtp_port == 25 and cfg.alerts.starttls == "opportunistic"


def test_the_docstring_example_loads(tmp_path: Path) -> None:
    doc = config_module.__doc__ or ""
    block = doc.split("::\n", 1)[1].split('"""')[0]
    lines = [line[4:] for line in block.splitlines()]
    text = "\n".join(lines)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "server-ca.pem").write_text("dummy")
    cfg = load_config(write(tmp_path, text))
    assert cfg.device.zone.key == "Europe/Berlin"
    assert cfg.server.registration_key == "ABCD-EFGH-1234"


def test_full_config(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "fw.pem").write_text(ed25519_pem())
    (tmp_path / "ca.pem").write_text("dummy")
    text = (
        MINIMAL.replace(
            "[device]", 'ca_bundle = "ca.pem"\nserver_name = "other.example.com"\n[device]'
        )
        + """
time_zone = "America/New_York"
[schedule]
upload_time = "23:45"
missed = "catch-up"
action_poll_interval_s = 900
[services]
security_mode = "locked-down"
disabled_actions = ["reboot", "upgrade-firmware"]
maintenance_window = "23:00-03:00"
firmware_public_key = "keys/fw.pem"
[proxy]
mode = "manual"
host = "proxy.example.com"
port = 3128
username = "dd"
password = "pw"
[alerts]
recipients = ["ops@example.com"]
smtp_host = "mail.example.com"
severities = ["critical", "warning"]
"""
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.server.ca_bundle == tmp_path / "ca.pem"
    assert cfg.server.server_name == "other.example.com"
    assert cfg.services.privacy.locked_down
    assert cfg.services.firmware_public_key is not None
    window = cfg.services.maintenance_window
    assert window is not None and (window.start, window.end) == (time(23), time(3))
    assert cfg.schedule.daily(cfg.device.zone).missed == "catch-up"
    assert "pw" not in repr(cfg.proxy)


def test_inline_firmware_key(tmp_path: Path) -> None:
    pem = ed25519_pem()
    text = MINIMAL + f"[services]\nfirmware_public_key = '''{pem}'''\n"
    assert load_config(write(tmp_path, text)).services.firmware_public_key == pem


def test_overrides_are_typed_and_applied(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    cfg = load_config(
        path,
        {
            "server.url": "https://other.example.com:8443/",
            "outbox.budget_bytes": "131072",
            "services.enabled": "false",
            "services.disabled_actions": "reboot, print-test-page",
            "schedule.upload_time": "03:30",
            "proxy.bypass": '["localhost", "*.corp"]',
            "retry.cap_s": 600,
        },
    )
    assert cfg.server.port == 8443 and cfg.server.base_url == "https://other.example.com:8443"
    assert cfg.outbox.budget_bytes == 131072
    assert cfg.services.enabled is False
    assert cfg.services.disabled_actions == ("reboot", "print-test-page")
    assert cfg.schedule.upload_time == time(3, 30)
    assert cfg.proxy.bypass == ("localhost", "*.corp")
    assert cfg.retry.cap_s == 600


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"server.urll": "x"}, "server.urll"),
        ({"outbox.budget_bytes": "lots"}, "outbox.budget_bytes"),
        ({"services.enabled": "maybe"}, "services.enabled"),
        ({"server.url": "http://plain.example.com"}, "server.url"),
    ],
)
def test_override_errors_name_file_and_key(
    tmp_path: Path, overrides: dict[str, object], key: str
) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert str(path) in str(info.value) and f"key '{key}'" in str(info.value)
    assert info.value.key == key


# Each case: TOML appended to (or replacing) the minimal config, and the key to be named.
BAD = [
    ('[server]\nurl = "http://dd.example.com"\n[device]\ndata_dir = "s"\n', "server.url"),
    ('[server]\nurl = "https://"\n[device]\ndata_dir = "s"\n', "server.url"),
    ('[server]\nurl = "https://h:99999"\n[device]\ndata_dir = "s"\n', "server.url"),
    ('[server]\nurl = "https://u:p@h"\n[device]\ndata_dir = "s"\n', "server.url"),
    ("[server]\nurl = 5\n[device]\ndata_dir = 's'\n", "server.url"),
    ("[device]\ndata_dir = 's'\n", "server"),
    ('[server]\nurl = "https://h"\n', "device"),
    ('[server]\nurl = "https://h"\n[device]\ntime_zone = "UTC"\n', "device.data_dir"),
    # the config file itself, then a directory under it
    ('[server]\nurl = "https://h"\n[device]\ndata_dir = "agent.toml"\n', "device.data_dir"),
    ('[server]\nurl = "https://h"\n[device]\ndata_dir = "agent.toml/s"\n', "device.data_dir"),
    (f'[server]\nurl = "https://{"a" * 64}.example"\n[device]\ndata_dir = "s"\n', "server.url"),
    ('[server]\nurl = "https://[::1]:8443"\n[device]\ndata_dir = "s"\n', "server.url"),
    (
        '[server]\nurl = "https://a..example"\nserver_name = "ok.example"\n'
        '[device]\ndata_dir = "s"\n',
        "server.url",
    ),
    (
        '[server]\nurl = "https://h"\nca_bundle = "nope.pem"\n[device]\ndata_dir = "s"\n',
        "server.ca_bundle",
    ),
    (
        '[server]\nurl = "https://h"\nserver_name = "bad name"\n[device]\ndata_dir = "s"\n',
        "server.server_name",
    ),
    (
        '[server]\nurl = "https://h"\nregistration_key = " "\n[device]\ndata_dir = "s"\n',
        "server.registration_key",
    ),
    ('[server]\nurl = "https://h"\ncolour = 1\n[device]\ndata_dir = "s"\n', "server.colour"),
    (MINIMAL + 'time_zone = "Mars/Olympus"\n', "device.time_zone"),
    (MINIMAL + 'profile = ""\n', "device.profile"),
    (MINIMAL + "[schedule]\nupload_time = '2am'\n", "schedule.upload_time"),
    (MINIMAL + "[schedule]\nmissed = 'later'\n", "schedule.missed"),
    (MINIMAL + "[schedule]\naction_poll_interval_s = 5\n", "schedule.action_poll_interval_s"),
    (MINIMAL + "[schedule]\naction_poll_interval_s = -1\n", "schedule.action_poll_interval_s"),
    (MINIMAL + "[schedule]\nfirmware_check = 'weekly'\n", "schedule.firmware_check"),
    (MINIMAL + "[services]\nenabled = 'yes'\n", "services.enabled"),
    (MINIMAL + "[services]\nsecurity_mode = 'paranoid'\n", "services.security_mode"),
    (MINIMAL + "[services]\ndisabled_actions = ['Reboot Now']\n", "services.disabled_actions"),
    (MINIMAL + "[services]\ndisabled_actions = 'reboot'\n", "services.disabled_actions"),
    (MINIMAL + "[services]\nmaintenance_window = '01:00'\n", "services.maintenance_window"),
    (MINIMAL + "[services]\nmaintenance_window = '01:00-01:00'\n", "services.maintenance_window"),
    (MINIMAL + "[services]\nfirmware_public_key = 'missing.pem'\n", "services.firmware_public_key"),
    (
        MINIMAL + "[services]\nfirmware_public_key = '-----BEGIN junk'\n",
        "services.firmware_public_key",
    ),
    (
        MINIMAL + "[services]\nsecurity_mode = 'locked-down'\nconsent_job_data = true\n",
        "services.consent_job_data",
    ),
    (MINIMAL + "[outbox]\nbudget_bytes = 10\n", "outbox.budget_bytes"),
    (MINIMAL + "[outbox]\nbudget_bytes = true\n", "outbox.budget_bytes"),
    (MINIMAL + "[retry]\nbase_s = 0\n", "retry.base_s"),
    (MINIMAL + "[retry]\nbase_s = 10\ncap_s = 5\n", "retry.cap_s"),
    (MINIMAL + "[proxy]\nmode = 'pac'\n", "proxy.mode"),
    (MINIMAL + "[proxy]\nmode = 'manual'\nport = 3128\n", "proxy.host"),
    (MINIMAL + "[proxy]\nmode = 'manual'\nhost = 'p'\n", "proxy.port"),
    (MINIMAL + "[proxy]\nmode = 'manual'\nhost = 'p'\nport = 0\n", "proxy.port"),
    (MINIMAL + "[proxy]\npassword = 'pw'\n", "proxy.password"),
    (MINIMAL + "[proxy]\nbypass = [1]\n", "proxy.bypass"),
    (MINIMAL + "[proxy]\nbypass = ['10.0.0.0/33']\n", "proxy.bypass"),
    (
        MINIMAL + "[alerts]\nrecipients = ['not-an-address']\nsmtp_host = 'm'\n",
        "alerts.recipients",
    ),
    (MINIMAL + "[alerts]\nrecipients = ['a@example.com']\n", "alerts.smtp_host"),
    (MINIMAL + "[alerts]\nsmtp_port = 70000\n", "alerts.smtp_port"),
    (MINIMAL + "[alerts]\nstarttls = 'always'\n", "alerts.starttls"),
    (MINIMAL + "[alerts]\nseverities = ['fatal']\n", "alerts.severities"),
    (MINIMAL + "[alerts]\nmin_interval_s = -5\n", "alerts.min_interval_s"),
    (MINIMAL + "[alerts]\nmin_interval_s = nan\n", "alerts.min_interval_s"),
    (MINIMAL + "[alerts]\nmin_interval_s = inf\n", "alerts.min_interval_s"),
    (MINIMAL + "[alerts]\nmin_interval_s = 1e12\n", "alerts.min_interval_s"),
    (MINIMAL + "[alerts]\nsmtp_host = 'mail..example.com'\n", "alerts.smtp_host"),
    (MINIMAL + "[proxy]\nmode = 'manual'\nhost = '.p'\nport = 3128\n", "proxy.host"),
    (MINIMAL + "[alerts]\npassword = 'pw'\n", "alerts.password"),
    (MINIMAL + "[extras]\nx = 1\n", "extras"),
    (MINIMAL.replace("[device]", "schedule = 5\n[device]"), "server.schedule"),
]


@pytest.mark.parametrize(("text", "key"), BAD)
def test_every_validation_error_names_the_file_and_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: key '{key}'"), message
    assert info.value.path == str(path) and info.value.key == key


def test_file_and_syntax_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "none.toml"))):
        load_config(tmp_path / "none.toml")
    bad = write(tmp_path, "[server\nurl=")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(bad)
    assert str(bad) in str(info.value)


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    ec = generate_private_key(SECP256R1()).public_key()
    pem = ec.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    text = MINIMAL + f"[services]\nfirmware_public_key = '''{pem}'''\n"
    with pytest.raises(ConfigError, match="Ed25519"):
        load_config(write(tmp_path, text))


def test_dataclasses_validate_when_built_in_code(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError, match=r"server\.url"):
        type(cfg.server)(url="ftp://x")
    with pytest.raises(ConfigError, match="maintenance_window"):
        MaintenanceWindow(time(1), time(1))
    assert isinstance(cfg, AgentConfig)


def test_the_shipped_example_file_loads_and_matches_the_docstring(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "fixtures" / "agent.example.toml"
    text = shipped.read_text()
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "server-ca.pem").write_text("dummy")
    cfg = load_config(write(tmp_path, text))
    assert cfg.schedule.upload_time.hour == 2
    doc = config_module.__doc__ or ""
    assert "[alerts]" in text and all(
        line.strip() in text for line in doc.split("::\n", 1)[1].splitlines() if line.strip()
    ), "fixtures/agent.example.toml and the config.py docstring have drifted apart"


def test_an_unknown_profile_is_a_config_error_naming_file_key_and_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 17.1: a traceback and exit 1 before; exit 2 naming the file, the key and
    # the profiles there are.
    from device_direct.__main__ import EXIT_USAGE, main

    path = write(tmp_path, MINIMAL.replace("[device]", '[device]\nprofile = "color-mfp"'))
    assert main(["register", "--config", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(path) in err and "device.profile" in err and "color-mfp" in err
    assert "office-color" in err and "Traceback" not in err


def test_the_example_names_a_real_profile() -> None:
    from emulator.model.profile import available_profiles

    shipped = Path(__file__).resolve().parents[2] / "fixtures" / "agent.example.toml"
    (line,) = [ln for ln in shipped.read_text().splitlines() if "profile =" in ln]
    name = line.split("=", 1)[1].split("#", 1)[0].strip().strip('"')
    assert name in available_profiles()
