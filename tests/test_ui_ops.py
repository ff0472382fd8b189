"""The manager's operations pages: 同步 (dead letters retried and discarded), 设备 (printers, test page, status
ticket, the scan test), 操作记录 (the audit log). Real app, real VirtualPrinter over TCP, a serial scanner
on a pty; the forms are posted as a browser would (session cookie, CSRF, form_id)."""

from __future__ import annotations

import asyncio
import html
import os
import re
import tty

import pytest

from drivers.virtual_printer import VirtualPrinter
from edge.core import config as config_mod
from edge.core.clock import iso, utcnow
from edge.services.app_keys import PRINTING, STORE
from edge.store import outbox, users
from tests.conftest import BARCODE, Api, query, seed, start_client, write_config

PASSWORD = "correct-horse-1"
POLL = 0.05


@pytest.fixture
async def shop(tmp_path):
    """A store with a network printer (a VirtualPrinter), a serial scanner on a pty, a manager and a cashier."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = tmp_path / "scanner0"
    path.symlink_to(os.ttyname(slave))
    async with VirtualPrinter(port=0) as vp:
        text = (f"[printing]\nstatus_poll_seconds = {POLL}\nstatus_ticket_at_start = false\n\n"
                f'[[printers]]\nname = "counter"\ntype = "network"\nhost = "127.0.0.1"\nport = {vp.port}\n\n'
                f'[[scanners]]\nname = "counter-scanner"\ntype = "serial"\npath = "{path}"\nterminator = "CR"\n')
        cfg = config_mod.load(write_config(tmp_path, text))
        seed(cfg.db_path)
        client = await start_client(cfg)
        store = client.server.app[STORE]
        password = users.new_password(PASSWORD)
        for name, display, role in (("boss", "张店长", "manager"), ("cash", "王芳", "cashier")):
            await store.write(users.add_user, name, display, role, password, iso(utcnow()))
        try:
            yield cfg, client, vp, master
        finally:
            await client.close()
            os.close(master)
            os.close(slave)


async def log_in(client, name: str) -> str:
    """A fresh session for `name`; returns the session's CSRF token (from the page's data-csrf)."""
    client.session.cookie_jar.clear()
    page = await (await client.get("/ui/login")).text()
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    resp = await client.post("/ui/login", data={"csrf": login_csrf, "name": name, "password": PASSWORD,
                                                "next": "/ui/cashier"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    body = await (await client.get("/ui/cashier")).text()
    return re.search(r'data-csrf="([^"]+)"', body).group(1)


async def get(client, path: str, status: int = 200) -> str:
    resp = await client.get(path, allow_redirects=False)
    body = await resp.text()
    assert resp.status == status, (path, resp.status, body[:500])
    return body


async def post(client, path: str, csrf: str, **fields):
    data = {"csrf": csrf, "form_id": fields.pop("form_id", os.urandom(8).hex()), **fields}
    resp = await client.post(path, data=data, allow_redirects=False)
    return resp.status, await resp.text(), resp


def element(body: str, pattern: str) -> str:
    match = re.search(pattern, body, re.S)
    assert match, pattern
    return html.unescape(match.group(1))


async def dead_letter(client, reason: str = "unknown sku HOM-001") -> int:
    """A sale the cloud rejected, recorded exactly as the sync engine records the cloud's answer."""
    api = Api(client)
    await api.ok("/sales", {"lines": [{"sku": "HOM-001", "qty": 1}],
                            "payments": [{"method": "wechat", "amount_fen": 1590}], "print_receipt": False})
    store = client.server.app[STORE]

    def reject(conn):
        batch = outbox.pending_batch(conn, "test-store", 100)
        sale = [e for e in batch if e["type"] == "sale.recorded"][-1]  # the sale just made
        outbox.record_results(conn, batch, [{"id": sale["id"], "status": "rejected", "reason": reason}],
                             iso(utcnow()))
        return sale["local_seq"]
    return await store.write(reject)


def audit_rows(cfg) -> list[tuple]:
    return query(cfg.db_path, "SELECT user_name, role, action, target, detail FROM audit_log ORDER BY id")


# -- access ----------------------------------------------------------------------------------------

async def test_a_cashier_gets_403_on_every_ops_page_and_action(shop):
    cfg, client, vp, _ = shop
    seq = await dead_letter(client)
    csrf = await log_in(client, "cash")
    for path in ("/ui/sync", "/ui/devices", "/ui/audit", "/ui/sync?fragment=sync_dead_letters"):
        await get(client, path, 403)
    for path in (f"/ui/sync/dead-letters/{seq}/retry", f"/ui/sync/dead-letters/{seq}/discard",
                 "/ui/devices/printers/counter/test-page", "/ui/devices/status-ticket", "/ui/devices/jobs/1/confirm"):
        status, _, _ = await post(client, path, csrf, note="x", printed="1")
        assert status == 403, path
    assert audit_rows(cfg) == []
    assert query(cfg.db_path, "SELECT resolution FROM dead_letters") == [(None,)]
    assert query(cfg.db_path, "SELECT count(*) FROM print_jobs WHERE kind IN ('test_page', 'status_ticket')") == [(0,)]


# -- 同步 ---------------------------------------------------------------------------------------------

async def test_sync_page_without_a_cloud_shows_queue_and_empty_state(shop):
    cfg, client, vp, _ = shop
    await log_in(client, "boss")
    body = await get(client, "/ui/sync")
    assert "未配置云端：数据只保存在本店" in body
    assert 'id="queue"' in body and 'data-live="sync_queue"' in body
    assert "没有被拒收的记录" in body
    await dead_letter(client)
    queue_html = await get(client, "/ui/sync?fragment=sync_queue")
    # the opening stock receipt and the sale wait (a dead letter stays due: it is resent after a cloud restore)
    assert element(queue_html, r'class="queue-depth">(\d+)<') == "2"
    assert 'data-type="sale.recorded"' in queue_html and re.search(r"（(刚刚|\d+ (秒|分钟|小时|天)前)）", queue_html)
    client.session.cookie_jar.update_cookies({"se_lang": "en"})
    assert "No cloud configured" in await get(client, "/ui/sync")


async def test_a_dead_letter_retried_from_the_page(shop):
    cfg, client, vp, _ = shop
    seq = await dead_letter(client)
    csrf = await log_in(client, "boss")
    body = await get(client, "/ui/sync")
    row = element(body, rf'(<tr data-seq="{seq}">.*?</tr>)')
    assert "<td>销售</td>" in row and "unknown sku HOM-001" in row and "洁柔 抽纸 3包装 ×1" in row
    assert 'class="retry' in row and 'class="discard' in row
    form_id = element(row, r'name="form_id" value="([^"]+)">\s*<button type="submit" class="retry')
    status, _, resp = await post(client, f"/ui/sync/dead-letters/{seq}/retry", csrf, form_id=form_id)
    assert status == 303 and resp.headers["Location"] == "/ui/sync?done=retry"
    # a double click: the same form again changes nothing more
    status, _, _ = await post(client, f"/ui/sync/dead-letters/{seq}/retry", csrf, form_id=form_id)
    assert status == 303
    assert query(cfg.db_path, "SELECT resolution, operator FROM dead_letters") == [("retried", "张店长")]
    assert query(cfg.db_path, "SELECT count(*) FROM outbox WHERE type = 'sale.recorded'") == [(2,)]
    assert audit_rows(cfg) == [("boss", "manager", "dead_letter.retry", str(seq), None)]
    assert f'data-seq="{seq}"' not in await get(client, "/ui/sync?fragment=sync_dead_letters")
    # once resolved, another attempt (a new form) is refused in words, nothing written
    status, body, _ = await post(client, f"/ui/sync/dead-letters/{seq}/retry", csrf)
    assert status == 409 and len(audit_rows(cfg)) == 1


async def test_discard_needs_a_note(shop):
    cfg, client, vp, _ = shop
    seq = await dead_letter(client)
    csrf = await log_in(client, "boss")
    status, body, _ = await post(client, f"/ui/sync/dead-letters/{seq}/discard", csrf, note="  ")
    assert status == 422
    row = element(body, rf'(<tr data-seq="{seq}">.*?</tr>)')
    assert re.search(r'name="note"[^>]*>\s*<span class="field-error">放弃前请写明原因</span>', row)
    assert query(cfg.db_path, "SELECT resolution FROM dead_letters") == [(None,)]
    assert audit_rows(cfg) == []
    status, _, _ = await post(client, f"/ui/sync/dead-letters/{seq}/discard", csrf, note="顾客已退货，无需上传")
    assert status == 303
    assert query(cfg.db_path, "SELECT resolution, operator, note FROM dead_letters") == [
        ("discarded", "张店长", "顾客已退货，无需上传")]
    assert query(cfg.db_path, "SELECT count(*) FROM outbox WHERE type = 'dead_letter.discarded'") == [(1,)]
    assert audit_rows(cfg) == [("boss", "manager", "dead_letter.discard", str(seq),
                                '{"note": "顾客已退货，无需上传"}')]


# -- 设备 ---------------------------------------------------------------------------------------------

async def _until(predicate, what: str, timeout: float = 5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


async def test_devices_page_test_print_status_ticket_and_scan_test(shop):
    cfg, client, vp, master = shop
    service = client.server.app[PRINTING]
    csrf = await log_in(client, "boss")

    async def ready():
        return 'data-state="ready"' in await get(client, "/ui/devices?fragment=devices_printers")
    await _until(ready, "printer ready")
    body = await get(client, "/ui/devices")
    row = element(body, r'(<tr data-printer="counter".*?</tr>)')
    assert "就绪" in row and "小票" in row and 'class="test-print"' in row
    assert 'id="print-status-ticket"' in body and 'id="scanners"' in body

    status, _, resp = await post(client, "/ui/devices/printers/counter/test-page", csrf)
    assert status == 303 and resp.headers["Location"] == "/ui/devices?done=test"
    status, _, _ = await post(client, "/ui/devices/status-ticket", csrf, printer="")
    assert status == 303

    async def printed():
        rows = await service.store.read(lambda conn: conn.execute("SELECT state FROM print_jobs").fetchall())
        return len(rows) == 2 and all(r[0] == "printed" for r in rows)
    await service.wait_for(printed)
    texts = [r.text for r in vp.receipts()]
    assert "打印测试" in texts[0] and "设备状态" in texts[1]
    assert query(cfg.db_path, "SELECT kind, state, created_by FROM print_jobs ORDER BY id") == [
        ("test_page", "printed", "张店长"), ("status_ticket", "printed", "张店长")]
    assert [r[2:4] for r in audit_rows(cfg)] == [("print.test", "counter"), ("print.status_ticket", "counter")]
    status, _, _ = await post(client, "/ui/devices/printers/nope/test-page", csrf)
    assert status == 404

    # the scan test: what the scanner sent, byte for byte
    async def connected():
        return 'data-state="connected"' in await get(client, "/ui/devices?fragment=devices_scanners")
    await _until(connected, "scanner connected")
    code = BARCODE["DRK-001"]
    os.write(master, code.encode() + b"\r")

    async def scanned():
        return "last-scan-raw" in await get(client, "/ui/devices?fragment=devices_scanners")
    await _until(scanned, "scan shown")
    scanners = await get(client, "/ui/devices?fragment=devices_scanners")
    assert code.encode().hex(" ") in element(scanners, r'class="last-scan-raw">([^<]*)<')
    assert element(scanners, r'class="last-scan-text">([^<]*)<') == code
    assert element(scanners, r'class="num scan-count">(\d+)<') == "1"


async def test_an_uncertain_print_job_is_confirmed_from_the_page(shop):
    cfg, client, vp, _ = shop
    csrf = await log_in(client, "boss")
    store = client.server.app[STORE]

    def uncertain(conn):  # as the worker leaves a job whose connection broke mid-send
        conn.execute("INSERT INTO print_jobs (key, kind, printer, payload, state, last_error, created_by, created_at, "
                     "expires_at, updated_at) VALUES ('k1', 'test_page', 'counter', '{\"printer\": \"counter\", "
                     "\"paper_mm\": 80}', 'uncertain', '发送中断', 'x', ?, ?, ?)",
                     ("2026-01-01T00:00:00.000Z",) * 3)
        return conn.execute("SELECT id FROM print_jobs WHERE key = 'k1'").fetchone()[0]
    job_id = await store.write(uncertain)
    body = await get(client, "/ui/devices?fragment=devices_uncertain")
    assert f'data-job-id="{job_id}"' in body and "发送中断" in body
    status, _, _ = await post(client, f"/ui/devices/jobs/{job_id}/confirm", csrf, printed="1")
    assert status == 303
    assert query(cfg.db_path, "SELECT state, resolution, resolved_by FROM print_jobs WHERE id = ?", job_id) == [
        ("printed", "confirmed_printed", "张店长")]
    assert audit_rows(cfg)[-1][2:] == ("print.confirm", str(job_id), '{"printed": true}')
    assert f'data-job-id="{job_id}"' not in await get(client, "/ui/devices?fragment=devices_uncertain")


# -- 操作记录 -------------------------------------------------------------------------------------------

async def test_audit_page_lists_the_actions_newest_first(shop):
    cfg, client, vp, _ = shop
    first, second = await dead_letter(client), await dead_letter(client, "unknown sku again")
    csrf = await log_in(client, "boss")
    await post(client, f"/ui/sync/dead-letters/{first}/retry", csrf)
    await post(client, f"/ui/sync/dead-letters/{second}/discard", csrf, note="重复")
    body = await get(client, "/ui/audit")
    table = element(body, r'(<table id="audit">.*?</table>)')
    actions = re.findall(r'data-action="([^"]+)"', table)
    assert actions == ["dead_letter.discard", "dead_letter.retry"]
    assert "张店长" in table and "店长" in table and "放弃被拒记录" in table and "备注: 重复" in table
    client.session.cookie_jar.update_cookies({"se_lang": "en"})
    assert "Discarded a rejected event" in await get(client, "/ui/audit")
