"""The doctor's verdicts (Check) and whose permissions they judge (Who): the service's user with the
unit's SupplementaryGroups= when that user exists, else the user running the doctor."""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import stat
from pathlib import Path

SERVICE_USER = "store-edge"
UNIT_GROUPS = ("dialout", "lp", "plugdev", "video", "input")  # the unit's SupplementaryGroups=
UNIT_PATHS = ("/etc/systemd/system/store-edge.service",)


@dataclasses.dataclass
class Check:
    name: str
    status: str          # ok | warn | fail
    message: str
    fix: str = ""


@dataclasses.dataclass
class Who:
    """The user whose permissions matter: name, uid, and every group id it has."""

    name: str
    uid: int
    gids: set[int]
    service: bool  # the service user: the unit adds UNIT_GROUPS even if /etc/group does not


def who_is(name: str | None) -> Who:
    try:
        if name is None:
            try:
                entry = pwd.getpwnam(SERVICE_USER)
            except KeyError:
                entry = pwd.getpwuid(os.getuid())
        else:
            entry = pwd.getpwnam(name)
    except KeyError:
        return Who(name or str(os.getuid()), os.getuid(), set(os.getgroups()) | {os.getgid()}, False)
    gids = set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    service = entry.pw_name == SERVICE_USER
    if service:
        for group in UNIT_GROUPS:
            try:
                gids.add(grp.getgrnam(group).gr_gid)
            except KeyError:
                pass
    return Who(entry.pw_name, entry.pw_uid, gids, service)


def can(who: Who, path: str | Path, mode: str) -> bool:
    """Whether `who` may read ('r') and/or write ('w') path, from its owner, group and mode bits."""
    if who.uid == 0:
        return True
    if who.uid == os.getuid() and not who.service:
        want = (os.R_OK if "r" in mode else 0) | (os.W_OK if "w" in mode else 0)
        return os.access(path, want)
    st = os.stat(path)
    if st.st_uid == who.uid:
        bits = (stat.S_IRUSR, stat.S_IWUSR)
    elif st.st_gid in who.gids:
        bits = (stat.S_IRGRP, stat.S_IWGRP)
    else:
        bits = (stat.S_IROTH, stat.S_IWOTH)
    return ("r" not in mode or bool(st.st_mode & bits[0])) and ("w" not in mode or bool(st.st_mode & bits[1]))


def group_fix(who: Who, path: str) -> str:
    try:
        group = grp.getgrgid(os.stat(path).st_gid).gr_name
    except (KeyError, OSError):
        group = "?"
    rules = "install systemd/99-store-edge.rules (sudo udevadm control --reload && sudo udevadm trigger) so " \
            f"the device belongs to group {SERVICE_USER}, or "
    return f"{rules}sudo usermod -aG {group} {who.name} (then restart the service / log in again)"
