"""config.toml: load, validate, and report errors that name the key and the line.

The file is checked completely before anything starts; `store-edge check-config` runs the same
code. Secrets never live in the TOML: it names a file or a systemd credential to read them from.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from drivers import DEVICE_SECTIONS, device_paths
from edge.core.scales import ScanningSection
from edge.core.toml_lines import KeyLines


class ConfigError(Exception):
    """The config cannot be used; `problems` lists every reason, each naming the key."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(problems))


class Section(BaseModel):
    # strict: a port written as "8470" (a string) is an error, not silently converted
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Secret:
    """A secret value that never shows in repr, str or logs."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str):
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.source})"

    __str__ = __repr__


class StoreSection(Section):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    name: Annotated[str, Field(min_length=1, max_length=100)]
    timezone: str = "Asia/Shanghai"
    data_dir: str = "var"
    # when the business day turns over, local time: a store open past midnight closes its day (日结) at 01:00
    day_cutoff: str = "00:00"
    # the chain (连锁) the store belongs to, as the cloud names it in member certificates (docs/members.md):
    # a member code of another chain is refused; without it no member code is accepted
    chain: Annotated[str | None, Field(pattern=r"^[\x21-\x7e]{1,64}$")] = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)")
        return value

    @field_validator("day_cutoff")
    @classmethod
    def _cutoff(cls, value: str) -> str:
        if not re.fullmatch(r"0\d:[0-5]\d|1[01]:[0-5]\d", value):
            raise ValueError(f"{value!r} is not a cut-off between \"00:00\" and \"11:59\" (HH:MM, the early "
                             "morning hour the business day ends)")
        return value


class ApiSection(Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8470
    # Tokens are always required when the API listens beyond loopback; this forces them on loopback too.
    require_token: bool = False
    max_body_kib: Annotated[int, Field(ge=4, le=16384)] = 256
    # generous: a normal read takes milliseconds; this only stops a runaway one from holding a reader
    read_timeout_seconds: Annotated[float, Field(ge=0.1, le=600)] = 5.0

    _whole_seconds_ok = field_validator("read_timeout_seconds", mode="before")(lambda value: _int_to_float(value))

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        if value in ("localhost", ""):
            return value or "127.0.0.1"
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address (use 127.0.0.1, 0.0.0.0 or an address of this PC)")
        return value


class SecretRef(Section):
    """Where to read a secret: a file, or a systemd credential (LoadCredential=)."""

    file: str | None = None
    credential: str | None = None


def _int_to_float(value):
    """Seconds written as 5 or 5.0 are both fine (strict mode would refuse the int)."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class CloudSection(Section):
    url: str = ""
    token: SecretRef | None = None
    batch_size: Annotated[int, Field(ge=1, le=500)] = 200
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    reconcile_minutes: Annotated[int, Field(ge=0, le=1440)] = 60  # 0: never
    retry_max_seconds: Annotated[float, Field(ge=1, le=3600)] = 300.0     # cap of the retry backoff
    person_retry_seconds: Annotated[float, Field(ge=1, le=3600)] = 300.0  # retry after a refusal (401/403/4xx)

    _whole_seconds_ok = field_validator("timeout_seconds", "retry_max_seconds", "person_retry_seconds",
                                        mode="before")(lambda value: _int_to_float(value))

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")


class TtlSection(Section):
    """How long a job may wait for its printer before it expires (visibly: it is listed, never lost)."""

    drawer: Annotated[int, Field(ge=1, le=3600)] = 10          # a drawer opening late is worse than none
    receipt: Annotated[int, Field(ge=10, le=7 * 86400)] = 3600
    order_ticket: Annotated[int, Field(ge=10, le=7 * 86400)] = 86400
    pickup_slip: Annotated[int, Field(ge=10, le=7 * 86400)] = 3600
    daily_summary: Annotated[int, Field(ge=10, le=7 * 86400)] = 86400
    shift_report: Annotated[int, Field(ge=10, le=7 * 86400)] = 86400  # kept for the manager: not urgent, not lost
    status_ticket: Annotated[int, Field(ge=10, le=7 * 86400)] = 600
    test_page: Annotated[int, Field(ge=10, le=7 * 86400)] = 600
    count_sheet: Annotated[int, Field(ge=10, le=7 * 86400)] = 3600


class PrintingSection(Section):
    language: Literal["zh", "en"] = "zh"           # labels on printed documents
    status_poll_seconds: Annotated[float, Field(ge=0.05, le=600)] = 5.0
    unprinted_alert_minutes: Annotated[int, Field(ge=1, le=1440)] = 3
    status_ticket_at_start: bool = True
    ttl_seconds: TtlSection = TtlSection()

    _whole_seconds_ok = field_validator("status_poll_seconds", mode="before")(lambda value: _int_to_float(value))


class KeyEntry(Section):
    """A public key that signs pickup and coupon tokens, for stores that must verify before their first sync."""

    kid: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,64}$")]
    public_key: Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{43}=$", description="base64 of the 32-byte Ed25519 key")]


class VerificationSection(Section):
    keys: list[KeyEntry] = []  # added to the keys the cloud publishes; the feed's own entry wins
    # coupon ids, or kinds ("value", "percent"), refused while the cloud is unreachable
    online_only_coupons: list[Annotated[str, Field(min_length=1, max_length=64)]] = []
    code_attempts: Annotated[int, Field(ge=1, le=100)] = 5        # wrong typed codes a till may enter...
    code_window_seconds: Annotated[int, Field(ge=1, le=3600)] = 60  # ...within this many seconds,
    code_lockout_seconds: Annotated[int, Field(ge=1, le=3600)] = 60  # before it is locked this long


class DashboardSection(Section):
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0   # a login lasts this long without use
    offline_banner_minutes: Annotated[float, Field(ge=0, le=1440)] = 5.0  # banner when the cloud is down longer

    _whole = field_validator("session_hours", "offline_banner_minutes", mode="before")(
        lambda value: _int_to_float(value))


class BackupSection(Section):
    """[backup] in config.toml."""

    enabled: bool = True
    folder: str = ""  # "" = <data_dir>/backups; a relative path is relative to config.toml's folder
    every_hours: Annotated[float, Field(gt=0, le=24 * 7)] | None = None
    daily_at: str | None = None  # "HH:MM" in the store's time zone; the default when every_hours is unset
    keep_last: Annotated[int, Field(ge=1, le=10000)] | None = 14
    keep_days: Annotated[int, Field(ge=1, le=3650)] | None = None

    @field_validator("every_hours", mode="before")
    @classmethod
    def _whole_hours_ok(cls, value):
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("daily_at")
    @classmethod
    def _hh_mm(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"{value!r} is not a time of day HH:MM (e.g. \"03:00\")")
        return value

    @model_validator(mode="after")
    def _one_schedule(self):
        if self.every_hours is not None and self.daily_at is not None:
            raise ValueError("give either every_hours or daily_at, not both")
        return self

    @property
    def time_of_day(self) -> tuple[int, int]:
        hour, minute = (self.daily_at or "03:00").split(":")
        return int(hour), int(minute)


class StockSection(Section):
    """[stock]: how purchase suggestions (补货建议) are worked out (docs/config.md)."""

    velocity_days: Annotated[int, Field(ge=1, le=365)] = 28   # sales of the last N days give units sold a day
    lead_time_days: Annotated[int, Field(ge=0, le=365)] = 3   # from the order to the goods on the shelf
    cover_days: Annotated[int, Field(ge=1, le=365)] = 7       # what an order should last after it arrives
    # a category whose supplier delivers sooner or later than the rest: {"乳品" = 1}
    lead_time_by_category: dict[Annotated[str, Field(min_length=1, max_length=64)],
                                Annotated[int, Field(ge=0, le=365)]] = {}


class MembersSection(Section):
    """[members]: what a member may spend while the cloud does not answer (docs/members.md, docs/config.md)."""

    # points a member may spend offline (since the cloud's last snapshot of them), whatever the balance
    offline_points_cap: Annotated[int, Field(ge=0, le=10_000_000)] = 2000
    # stored value (fen) a member may pay offline; 0: stored value pays only while the cloud answers
    offline_stored_value_cap_fen: Annotated[int, Field(ge=0, le=100_000_000)] = 0


class LogSection(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


# The device tables ([[printers]], [[scanners]], [[cameras]]) come from drivers/, so a new device
# type brings its own config model and nothing here changes.
def _device_field(models: tuple):
    item = models[0] if len(models) == 1 else Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
    return (list[item], Field(default_factory=list))


ConfigFile = create_model(
    "ConfigFile",
    __base__=Section,
    store=(StoreSection, ...),
    api=(ApiSection, ApiSection()),
    cloud=(CloudSection, CloudSection()),
    printing=(PrintingSection, PrintingSection()),
    verification=(VerificationSection, VerificationSection()),
    scanning=(ScanningSection, ScanningSection()),
    dashboard=(DashboardSection, DashboardSection()),
    backup=(BackupSection, BackupSection()),
    stock=(StockSection, StockSection()),
    members=(MembersSection, MembersSection()),
    log=(LogSection, LogSection()),
    **{section: _device_field(models) for section, models in DEVICE_SECTIONS.items()},
)


# What a reload (SIGHUP) cannot change in a running daemon: the store's identity and data, where the
# API listens, the cloud link, and the scheduled jobs. Changes there are reported as needing a restart.
RESTART_SECTIONS = ("store", "api", "cloud", "backup")


@dataclass
class Config:
    """The validated configuration, with paths resolved against the config file's folder.

    One object for the daemon's life: a reload swaps its `raw` sections in place (`adopt`), so every
    part that reads the config sees the new one. Nothing else changes it.
    """

    path: Path
    raw: BaseModel  # ConfigFile
    data_dir: Path
    cloud_token: Secret | None

    def adopt(self, new: Config) -> list[str]:
        """Take a reloaded config; return the changed sections that only a restart applies (kept as they were)."""
        restart = [name for name in RESTART_SECTIONS if getattr(new.raw, name) != getattr(self.raw, name)]
        if new.cloud_token is not None and self.cloud_token is not None \
                and new.cloud_token.reveal() != self.cloud_token.reveal() and "cloud" not in restart:
            restart.append("cloud")
        self.raw = new.raw.model_copy(update={name: getattr(self.raw, name) for name in RESTART_SECTIONS})
        return restart

    @property
    def store(self) -> StoreSection:
        return self.raw.store

    @property
    def api(self) -> ApiSection:
        return self.raw.api

    @property
    def cloud(self) -> CloudSection:
        return self.raw.cloud

    @property
    def printing(self) -> PrintingSection:
        return self.raw.printing

    @property
    def verification(self) -> VerificationSection:
        return self.raw.verification

    @property
    def scanning(self) -> ScanningSection:
        return self.raw.scanning

    @property
    def dashboard(self) -> DashboardSection:
        return self.raw.dashboard

    @property
    def backup(self) -> BackupSection:
        return self.raw.backup

    @property
    def backup_dir(self) -> Path:
        """[backup] folder: <data_dir>/backups by default; a relative path is relative to config.toml's folder."""
        if not self.backup.folder:
            return self.data_dir / "backups"
        return (self.path.parent / self.backup.folder).resolve()

    @property
    def stock(self) -> StockSection:
        return self.raw.stock

    @property
    def members(self) -> MembersSection:
        return self.raw.members

    @property
    def log(self) -> LogSection:
        return self.raw.log

    @property
    def db_path(self) -> Path:
        return self.data_dir / "store.db"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.store.timezone)

    @property
    def day_cutoff(self) -> time:
        hour, minute = self.store.day_cutoff.split(":")
        return time(int(hour), int(minute))

    @property
    def tokens_required(self) -> bool:
        return self.api.require_token or not is_loopback(self.api.host)

    def devices(self):
        """(section, device config) for every configured device."""
        for section in DEVICE_SECTIONS:
            for device in getattr(self.raw, section):
                yield section, device


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(path: str | os.PathLike) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, [f"{path}: file not found"])
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"{path}: cannot read: {exc}"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"{path}: not valid TOML: {exc}"])

    lines = KeyLines(text)
    try:
        raw = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [lines.describe(path, _error_loc(err), _message(err))
                                 for err in exc.errors()])

    problems: list[str] = []
    base = path.resolve().parent
    data_dir = (base / raw.store.data_dir).resolve()
    if data_dir.exists() and not data_dir.is_dir():
        problems.append(lines.describe(path, ("store", "data_dir"), f"{data_dir} exists and is not a folder"))

    seen: dict[str, tuple] = {}
    for section in DEVICE_SECTIONS:
        names: dict[str, int] = {}
        for index, device in enumerate(getattr(raw, section)):
            if device.name in names:
                problems.append(lines.describe(path, (section, index, "name"),
                                               f"device name {device.name!r} is used twice in [[{section}]]"))
            names[device.name] = index
            for key, value in device_paths(device):
                loc = (section, index, key)
                if value in seen:
                    other = seen[value]
                    problems.append(lines.describe(
                        path, loc, f"device path {value!r} is already used by "
                        f"{other[0]}[{other[1]}].{other[2]} (line {lines.find(other) or '?'})"))
                else:
                    seen[value] = loc

    token = None
    if raw.cloud.token is not None:
        try:
            token = read_secret(raw.cloud.token, base)
        except ValueError as exc:
            problems.append(lines.describe(path, ("cloud", "token"), str(exc)))
    if raw.cloud.url and token is None and not problems:
        problems.append(lines.describe(path, ("cloud", "token"),
                                       "cloud.url is set, so cloud.token (file or credential) is required"))

    if problems:
        raise ConfigError(path, problems)
    return Config(path=path.resolve(), raw=raw, data_dir=data_dir, cloud_token=token)


def read_secret(ref: SecretRef, base: Path) -> Secret:
    """Read a secret from a file or from $CREDENTIALS_DIRECTORY (systemd LoadCredential=)."""
    if (ref.file is None) == (ref.credential is None):
        raise ValueError("give exactly one of file = \"...\" or credential = \"...\"")
    if ref.file is not None:
        source = (base / ref.file).resolve()
        label = f"file {source}"
    else:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise ValueError(f"credential {ref.credential!r} asked for, but $CREDENTIALS_DIRECTORY is not set "
                             "(run under systemd with LoadCredential=, or use file = \"...\")")
        source = Path(creds) / ref.credential
        label = f"credential {ref.credential}"
    try:
        value = source.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ValueError(f"secret {label}: file not found")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"secret {label}: cannot read ({exc.__class__.__name__})")
    if not value:
        raise ValueError(f"secret {label} is empty")
    return Secret(value, label)


def _error_loc(err: dict) -> tuple:
    # a wrong device type is reported on the table; point at its `type =` line instead
    return tuple(err["loc"]) + (("type",) if err["type"].startswith("union_tag") else ())


def _message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "union_tag_invalid":
        return err["msg"].replace("Input tag", "type").replace(" found using 'type'", "")
    msg = err["msg"]
    if err["type"].endswith("_type"):
        msg += f" (got {type(err.get('input')).__name__} {err.get('input')!r})"
    return msg.removeprefix("Value error, ")
