"""`store-edge demo --for 20` end to end: hub, fault proxy, daemon, virtual printer, a serial scanner
on a pty and a camera reading a generated video, all in one child process started as the README
says (the installed console script); the summary's last line is JSON.

20 s, not more: the simulation's timeline scales to --for (edge/ops/demo/simulation.py), so a shorter
run has the same orders, sales, pickups by every route and the outage (down, then blackholed, then
back), only closer together; at 20 s a run has about 30 orders and 30 sales, three times what the
checks below ask for, also on a loaded machine."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers_daemon import store_edge_command

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_config(tmp_path: Path) -> Path:
    """A copy of the shipped config.toml with a temp data folder and a free API port."""
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text, n_dir = re.subn(r'(?m)^data_dir = "[^"]*"', f'data_dir = "{tmp_path / "var"}"', text)
    text, n_port = re.subn(r"(?m)^port = 8470\b", f"port = {free_port()}", text)
    assert n_dir == 1 and n_port == 1, "config.toml changed shape: update this test"
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


SECONDS = 20


def test_demo_for_20_seconds(tmp_path):
    config = demo_config(tmp_path)
    started = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.run(
        [*store_edge_command(), "demo", "--for", str(SECONDS), "--config", str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=SECONDS + 90)
    took = time.monotonic() - started
    out = proc.stdout.strip().splitlines()
    assert out, f"no output; stderr:\n{proc.stderr[-3000:]}"
    head = "\n".join(out[:5])
    assert "/ui/" in head and "manager" in head and "cashier" in head, head  # the dashboard and logins first
    summary = json.loads(out[-1])
    report = f"exit {proc.returncode} after {took:.0f} s\n" + "\n".join(out[-14:]) + "\n" + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    assert summary["checks_passed"] is True and summary["failed_checks"] == [], report
    assert summary["errors_count"] == 0, report
    assert summary["orders_printed"] >= 20, report
    assert summary["pickups_verified"] >= 10, report
    assert summary["pickups_provisional"] >= 1, report  # hand-overs during the outage
    assert summary["pickups_at_cloud"] == summary["pickups_verified"], report  # provisional ones reconciled
    assert summary["pickups_by"]["serial"] >= 1 and summary["pickups_by"]["camera"] >= 1, report
    assert summary["outage_survived"] is True and summary["dead_letters"] == 0, report
    assert summary["outage"]["link_went_down"] and summary["outage"]["link_came_back"], report
    assert summary["ledger_clean"] is True, report
    assert summary["balances_equal"] is True and summary["balance_differences"] == [], report
    assert summary["sales"] >= 10 and summary["events_synced"] > 0, report
    # members: sales with points earned and spent and stored value paid, as the cloud's ledgers hold them
    assert summary["members_agree"] is True and summary["member_sales"] >= 3, report
    assert summary["member_points_earned"] > 0 and summary["member_points_spent"] > 0, report
    assert summary["member_stored_value_fen"] > 0 and summary["member_sales_by"]["serial"] >= 1, report
    # the cashier's shift holds every till sale, its drawer counted, and its 交班小票 came out
    assert summary["shift"]["sales"] == summary["sales"] and summary["shift"]["slip_printed"] is True, report
    assert summary["shift"]["counted_fen"] == summary["shift"]["expected_cash_fen"] > 0, report
    receipts = tmp_path / "var" / "virtual-printer"
    assert len(list(receipts.glob("*.png"))) == summary["receipts_printed"], report
    assert took < SECONDS + 60, report  # start, the drain (30 s at most) and the checks


def store_fingerprint(db_path: Path) -> tuple:
    """What the demo would add to a store: logins, products, stock moves, sales."""
    conn = sqlite3.connect(db_path)
    try:
        return tuple(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                     for table in ("users", "products", "stock_moves", "sales"))
    finally:
        conn.close()


@pytest.fixture
def staged(monkeypatch, tmp_path):
    """The demo's command up to the stage: the config the stage would run on, without starting it."""
    from edge.ops.demo import stage

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen = []

    async def main(self, logins):
        seen.append((self.config, logins))
        return 0

    monkeypatch.setattr(stage.Demo, "main", main)
    return seen


@pytest.mark.parametrize("how", ["cwd", "env"])
def test_the_demo_without_config_runs_on_scratch_data_never_the_installed_store(config, staged, monkeypatch,
                                                                               tmp_path, how):
    """Issue 15 item 16: on a store PC `store-edge demo` found the real config (./config.toml,
    $STORE_EDGE_CONFIG, /etc/store-edge/config.toml) and seeded demo logins into the real store."""
    from edge.ops import cli

    before = store_fingerprint(config.db_path)
    if how == "cwd":
        monkeypatch.chdir(tmp_path)  # ./config.toml is the real store's
        monkeypatch.delenv("STORE_EDGE_CONFIG", raising=False)
    else:
        monkeypatch.setenv("STORE_EDGE_CONFIG", str(config.path))
    assert cli.main(["demo", "--for", "5"]) == 0
    [(demo_config, logins)] = staged
    assert demo_config.data_dir.is_relative_to(tmp_path / "tmp") and (demo_config.data_dir / ".store-edge-demo").is_file()
    assert {name for name, _, _ in logins} == {"manager", "cashier"}
    assert store_fingerprint(config.db_path) == before


def test_the_demo_refuses_a_data_folder_holding_a_real_store(config, staged, capsys):
    from edge.ops.demo.command import main

    before = store_fingerprint(config.db_path)
    assert main(["--config", str(config.path), "--for", "5"]) == 2
    assert "holds a store that the demo did not make" in capsys.readouterr().err
    assert staged == [] and store_fingerprint(config.db_path) == before
    assert not (config.data_dir / ".store-edge-demo").exists()


def test_the_demo_runs_again_on_the_folder_it_made(tmp_path, staged):
    from edge.ops.demo.command import main

    config = tmp_path / "demo.toml"
    config.write_text('[store]\nid = "demo-store-001"\nname = "演示门店"\ndata_dir = "demo-var"\n', encoding="utf-8")
    assert main(["--config", str(config), "--for", "5"]) == 0
    assert main(["--config", str(config), "--for", "5"]) == 0  # its own store now: not refused
    assert len(staged) == 2 and staged[1][0].data_dir == tmp_path / "demo-var"


def passing_summary() -> dict:
    return {"outage_survived": True, "ledger_clean": True, "balances_equal": True, "queue_drained": True,
            "all_orders_printed": True, "pickups_at_cloud": 3, "pickups_verified": 3, "errors": [], "errors_count": 0,
            "orders_created": 4, "sales": 9, "events_synced": 40, "receipts_printed": 13, "member_sales": 3,
            "members_agree": True,
            "shift": {"number": 1, "sales": 9, "expected_cash_fen": 25340, "counted_fen": 25340, "difference_fen": 0,
                      "slip_printed": True}}


def shift(**change) -> dict:
    return {**passing_summary()["shift"], **change}


@pytest.mark.parametrize("change, failed", [
    ({}, []),
    ({"errors": ["till: ClientError()"], "errors_count": 1}, ["no_errors"]),
    ({"orders_created": 0, "all_orders_printed": True}, ["enough_activity"]),
    ({"sales": 0, "pickups_verified": 0, "pickups_at_cloud": 0, "events_synced": 0, "receipts_printed": 0,
      "shift": shift(sales=0)}, ["enough_activity"]),
    ({"shift": shift(sales=8)}, ["shift_closed"]),                # a sale outside the cashier's shift
    ({"shift": shift(slip_printed=False)}, ["shift_closed"]),     # no 交班小票
])
def test_the_demo_checks_count_its_errors_and_need_some_activity(change, failed):
    """Issue 15 item 17: `checks_passed` held with errors in the summary, and with nothing done."""
    from edge.ops.demo.summary import checks

    results = checks({**passing_summary(), **change})
    assert [name for name, ok in results.items() if not ok] == failed
