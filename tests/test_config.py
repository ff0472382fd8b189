"""config.toml validation: every problem named with its key and line; the shipped example passes."""

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edge.core import config
from edge.core.clock import business_date, day_bounds

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
[store]
id = "s1"
name = "测试店"
data_dir = "var"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as info:
        config.load(write(tmp_path, text))
    return info.value.problems


def test_shipped_example_is_valid():
    cfg = config.load(ROOT / "config.toml")
    assert cfg.store.id and cfg.api.host == "127.0.0.1"
    assert not cfg.tokens_required
    assert cfg.db_path == (ROOT / "var" / "store.db").resolve()


def test_defaults_and_paths_resolve_against_the_file(tmp_path):
    cfg = config.load(write(tmp_path, BASE))
    assert cfg.api.port == 8470 and cfg.store.timezone == "Asia/Shanghai"
    assert cfg.data_dir == (tmp_path / "var").resolve()
    assert list(cfg.devices()) == []


@pytest.mark.parametrize("extra, needle", [
    ('[api]\nport = "8470"\n', 'config.toml:7: api.port: Input should be a valid integer'),
    ("[api]\nport = 70000\n", "config.toml:7: api.port: Input should be less than or equal to 65535"),
    ("[api]\nprot = 8470\n", "config.toml:7: api.prot: unknown key"),
    ("[apii]\nport = 1\n", "config.toml:6: apii: unknown key"),
    ('[api]\nhost = "till.local"\n', "config.toml:7: api.host: 'till.local' is not an IP address"),
    ('[log]\nlevel = "loud"\n', "config.toml:7: log.level: Input should be 'debug', 'info', 'warning' or 'error'"),
    ('[cloud]\nurl = "ftp://x"\n', "config.toml:7: cloud.url: 'ftp://x' is not an http:// or https:// URL"),
    ('[[printers]]\nname = "p"\ntype = "network"\nhost = "10.0.0.9"\nport = 0\n',
     "config.toml:10: printers[0].port: Input should be greater than or equal to 1"),
    ('[[scanners]]\nname = "s"\ntype = "laser"\n', "config.toml:8: scanners[0].type: type 'laser' does not match"),
    ('[[scanners]]\nname = "s"\ntype = "serial"\npath = "/dev/ttyACM0"\nbaud = 12345\n',
     "config.toml:10: scanners[0].baud: Input should be"),
    ('[[scanners]]\nname = "s"\ntype = "serial"\n', "config.toml:6: scanners[0].path: required key is missing"),
])
def test_each_error_names_key_and_line(tmp_path, extra, needle):
    found = problems(tmp_path, BASE + "\n" + extra)
    assert any(needle in p for p in found), found


def test_missing_store_section_and_bad_timezone(tmp_path):
    assert any("store: required key is missing" in p for p in problems(tmp_path, "[api]\nport = 1\n"))
    found = problems(tmp_path, BASE.replace('data_dir', 'timezone = "Mars/Base"\ndata_dir'))
    assert any("config.toml:4: store.timezone: unknown time zone 'Mars/Base'" in p for p in found), found


def test_day_cutoff_moves_the_business_day_past_midnight(tmp_path):
    cfg = config.load(write(tmp_path, BASE.replace("data_dir", 'day_cutoff = "01:00"\ndata_dir')))
    assert (cfg.day_cutoff.hour, cfg.day_cutoff.minute) == (1, 0)
    half_past_midnight = datetime(2026, 12, 6, 16, 30, tzinfo=timezone.utc)   # 00:30 on the 7th in Shanghai
    assert business_date(half_past_midnight, cfg.tz) == "2026-12-07"
    assert business_date(half_past_midnight, cfg.tz, cfg.day_cutoff) == "2026-12-06"
    assert business_date(datetime(2026, 12, 6, 17, 0, tzinfo=timezone.utc), cfg.tz, cfg.day_cutoff) == "2026-12-07"
    assert day_bounds("2026-12-06", cfg.tz, cfg.day_cutoff) == ("2026-12-05T17:00:00.000Z", "2026-12-06T17:00:00.000Z")
    assert config.load(write(tmp_path, BASE)).day_cutoff.hour == 0
    for bad in ("13:00", "1:00", "24:00", "noon"):
        found = problems(tmp_path, BASE.replace("data_dir", f'day_cutoff = "{bad}"\ndata_dir'))
        assert any("config.toml:4: store.day_cutoff:" in p and "cut-off" in p for p in found), found


def test_all_problems_are_reported_at_once(tmp_path):
    found = problems(tmp_path, BASE + '[api]\nport = "x"\nbogus = 1\n[log]\nlevel = 3\n')
    assert len(found) == 3


def test_duplicate_device_paths_and_names_are_refused(tmp_path):
    text = BASE + """
[[printers]]
name = "receipt"
type = "serial"
path = "/dev/ttyUSB0"

[[scanners]]
name = "gun"
type = "serial"
path = "/dev/ttyUSB0"

[[scanners]]
name = "gun"
type = "hid"
path = "/dev/input/by-id/usb-scanner-event-kbd"

[[printers]]
name = "kitchen"
type = "network"
host = "192.0.2.7"

[[printers]]
name = "bar"
type = "network"
host = "192.0.2.7"
port = 9100
"""
    found = problems(tmp_path, text)
    assert any(p.startswith(f"{tmp_path / 'config.toml'}:14: scanners[0].path: device path '/dev/ttyUSB0' is "
                            "already used by printers[0].path (line 9)") for p in found), found
    assert any(":17: scanners[1].name: device name 'gun' is used twice" in p for p in found), found
    assert any(":29: printers[2].host: device path '192.0.2.7:9100' is already used by printers[1].host"
               in p for p in found), found


def test_invalid_toml_names_the_line(tmp_path):
    found = problems(tmp_path, BASE + "[api\n")
    assert "not valid TOML" in found[0] and "line 5" in found[0]


def test_missing_config_file(tmp_path):
    with pytest.raises(config.ConfigError) as info:
        config.load(tmp_path / "nope.toml")
    assert "file not found" in str(info.value)


def test_secret_from_file_is_read_and_never_shown(tmp_path):
    (tmp_path / "token").write_text("s3cret-value\n")
    cfg = config.load(write(tmp_path, BASE + '[cloud]\nurl = "https://c.example"\ntoken = { file = "token" }\n'))
    assert cfg.cloud_token.reveal() == "s3cret-value"
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg.cloud_token)


def test_secret_from_systemd_credential(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cloud-token").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = config.load(write(tmp_path, BASE + '[cloud]\nurl = "https://c.example"\n'
                                           'token = { credential = "cloud-token" }\n'))
    assert cfg.cloud_token.reveal() == "from-systemd"


@pytest.mark.parametrize("token, needle", [
    ('{ file = "missing" }', "cloud.token: secret file"),
    ('{ credential = "cloud-token" }', "$CREDENTIALS_DIRECTORY is not set"),
    ('{ file = "a", credential = "b" }', "give exactly one of"),
    ('{ path = "a" }', "cloud.token.path: unknown key"),
])
def test_secret_problems(tmp_path, monkeypatch, token, needle):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    found = problems(tmp_path, BASE + f'[cloud]\nurl = "https://c.example"\ntoken = {token}\n')
    assert any(needle in p for p in found), found


def test_cloud_url_without_token(tmp_path):
    found = problems(tmp_path, BASE + '[cloud]\nurl = "https://c.example"\n')
    assert any("cloud.token (file or credential) is required" in p for p in found)


def test_tokens_required_beyond_loopback(tmp_path):
    assert config.load(write(tmp_path, BASE + '[api]\nhost = "0.0.0.0"\n')).tokens_required
    assert config.load(write(tmp_path, BASE + '[api]\nhost = "::1"\n')).tokens_required is False
    assert config.load(write(tmp_path, BASE + "[api]\nrequire_token = true\n")).tokens_required


def test_check_config_command(tmp_path):
    good = write(tmp_path, BASE)
    run = subprocess.run([sys.executable, "-m", "edge", "check-config", str(good)], capture_output=True, text=True)
    assert run.returncode == 0 and "OK" in run.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + "[api]\nport = -1\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "edge", "check-config", str(bad)], capture_output=True, text=True)
    assert run.returncode == 1
    assert "bad.toml:6: api.port: Input should be greater than or equal to 1" in run.stdout


def test_every_document_kind_has_a_time_to_live():
    from drivers.models import DOCUMENT_KINDS  # noqa: PLC0415
    from edge.core.config import TtlSection  # noqa: PLC0415

    assert set(TtlSection.model_fields) == set(DOCUMENT_KINDS)


def test_printer_and_printing_keys_are_checked(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[store]\nid = "s"\nname = "店"\n\n[printing]\nlanguage = "fr"\n\n[printing.ttl_seconds]\n'
                    'drawer = 0\n\n[[printers]]\nname = "p"\ntype = "network"\nhost = "10.0.0.9"\n'
                    'documents = ["receipt", "poster"]\nstatus = "sometimes"\n', encoding="utf-8")
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    text = "\n".join(err.value.problems)
    for key in ("printing.language", "printing.ttl_seconds.drawer", "printers[0].documents[1]", "printers[0].status"):
        assert key in text, text


def test_stock_settings_of_purchase_suggestions(tmp_path):
    cfg = config.load(write(tmp_path, BASE))
    assert (cfg.stock.velocity_days, cfg.stock.lead_time_days, cfg.stock.cover_days) == (28, 3, 7)
    cfg = config.load(write(tmp_path, BASE + "\n[stock]\nvelocity_days = 14\nlead_time_days = 0\ncover_days = 10\n"))
    assert (cfg.stock.velocity_days, cfg.stock.lead_time_days, cfg.stock.cover_days) == (14, 0, 10)
    found = problems(tmp_path, BASE + "\n[stock]\nvelocity_days = 0\nlead_time_days = -1\ncover_days = 3.5\n"
                     "reorder = true\n")
    assert any("config.toml:7: stock.velocity_days: Input should be greater than or equal to 1" in p for p in found)
    assert any("config.toml:8: stock.lead_time_days: Input should be greater than or equal to 0" in p for p in found)
    assert any("config.toml:9: stock.cover_days: Input should be a valid integer" in p for p in found)
    assert any("config.toml:10: stock.reorder: unknown key" in p for p in found), found
    cfg = config.load(write(tmp_path, BASE + '\n[stock.lead_time_by_category]\n"乳品" = 1\n"饮料" = 5\n'))
    assert cfg.stock.lead_time_by_category == {"乳品": 1, "饮料": 5} and cfg.stock.lead_time_days == 3
    found = problems(tmp_path, BASE + '\n[stock.lead_time_by_category]\n"乳品" = 400\n')
    assert any("config.toml:7: stock.lead_time_by_category.乳品: Input should be less than or equal to 365" in p
               for p in found), found


def test_members_offline_caps(tmp_path):
    cfg = config.load(write(tmp_path, BASE))
    assert (cfg.members.offline_points_cap, cfg.members.offline_stored_value_cap_fen) == (2000, 0)
    cfg = config.load(write(tmp_path, BASE + "\n[members]\noffline_points_cap = 0\n"
                                             "offline_stored_value_cap_fen = 10000\n"))
    assert (cfg.members.offline_points_cap, cfg.members.offline_stored_value_cap_fen) == (0, 10000)
    found = problems(tmp_path, BASE + "\n[members]\noffline_points_cap = -1\noffline_stored_value_cap_fen = 1.5\n"
                     "offline_cap = 1\n")
    assert any("config.toml:7: members.offline_points_cap: Input should be greater than or equal to 0" in p
               for p in found), found
    assert any("config.toml:8: members.offline_stored_value_cap_fen: Input should be a valid integer" in p
               for p in found), found
    assert any("config.toml:9: members.offline_cap: unknown key" in p for p in found), found
