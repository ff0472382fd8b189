"""`store-edge catalog import/export` and `store-edge ledger verify`, run as real commands."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.barcodes import gtin_check_digit, gtin_problem


def ean13(body12: str) -> str:
    return body12 + str(gtin_check_digit(body12))


@pytest.fixture
def cfg(tmp_path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[store]\nid = "s1"\nname = "测试店"\ndata_dir = "var"\n', encoding="utf-8")
    return path


def run(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)


def db(cfg: Path) -> sqlite3.Connection:
    return sqlite3.connect(cfg.parent / "var" / "store.db")


def test_gtin_check_digits():
    assert gtin_problem("6901234567892") is None
    assert gtin_problem("6901234567893") == "check digit is 3, should be 2"
    assert gtin_problem("96385074") is None            # EAN-8
    assert gtin_problem("036000291452") is None        # UPC-A
    assert gtin_problem("ABC-123") is None             # not a GTIN: passes through


def test_csv_import_keeps_good_rows_and_reports_each_bad_one(tmp_path, cfg):
    good1, good2, taken = ean13("690123456789"), ean13("690123456790"), ean13("690123456791")
    csv_text = (
        "sku,name,price,unit,category,low_stock,barcodes\n"
        f"A-1,农夫山泉 550ml,2.00,瓶,饮料,5,{good1}\n"
        f"A-2,可口可乐 330ml,3.5,罐,饮料,,{good2}|{taken}\n"
        "A-3,坏价格,abc,瓶,,,\n"                       # price not a number
        "A-4,多位小数,1.234,瓶,,,\n"                    # more than two decimals
        f"A-5,抢条码,1,瓶,,,{taken}\n"                  # barcode of A-2
        "A-6,错校验位,1,瓶,,,6901234567893\n"           # bad check digit
        "A-1,重复,1,瓶,,,\n"                            # SKU twice in the file
        ",无SKU,1,瓶,,,\n"
    )
    path = tmp_path / "catalog.csv"
    path.write_bytes(csv_text.encode("gb18030"))   # as Excel saves it on a Chinese Windows PC
    result = run(cfg, "catalog", "import", str(path))
    assert result.returncode == 1, result.stderr
    assert "2 of 8 products imported, 6 rows refused" in result.stdout
    for row, text in [(3, "price: 'abc' is not a number of yuan"), (4, "more than two decimals"),
                      (5, f"barcode {taken} already belongs to SKU A-2"), (6, "check digit is 3, should be 2"),
                      (7, "SKU A-1 is already on row 1"), (8, "sku:")]:
        assert any(line.strip().startswith(f"row {row}") and text in line for line in result.stdout.splitlines()), \
            (row, result.stdout)
    with db(cfg) as conn:
        assert conn.execute("SELECT sku, name, price_fen, low_stock FROM products ORDER BY sku").fetchall() == [
            ("A-1", "农夫山泉 550ml", 200, 5), ("A-2", "可口可乐 330ml", 350, 0)]
        assert conn.execute("SELECT count(*) FROM barcodes").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM stock_balances").fetchone()[0] == 2


def test_json_round_trip_and_update(tmp_path, cfg):
    products = [{"sku": f"P-{i}", "name": f"商品{i}号", "price_fen": 100 + i, "barcodes": [ean13(f"69000000{i:04d}")]}
                for i in range(50)]
    src = tmp_path / "in.json"
    src.write_text(json.dumps({"products": products}, ensure_ascii=False), encoding="utf-8")
    assert run(cfg, "catalog", "import", str(src)).returncode == 0

    out = tmp_path / "out.json"
    assert run(cfg, "catalog", "export", str(out)).returncode == 0
    exported = json.loads(out.read_text(encoding="utf-8"))["products"]
    assert [(p["sku"], p["name"], p["price_fen"], p["barcodes"]) for p in exported] == \
        sorted((p["sku"], p["name"], p["price_fen"], p["barcodes"]) for p in products)

    # re-import with a changed price and a replaced barcode: an update, not a duplicate
    products[0] = {**products[0], "price_fen": 999, "barcodes": [ean13("691111111111")]}
    src.write_text(json.dumps(products, ensure_ascii=False), encoding="utf-8")
    assert run(cfg, "catalog", "import", str(src)).returncode == 0
    with db(cfg) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 50
        assert conn.execute("SELECT price_fen FROM products WHERE sku = 'P-0'").fetchone()[0] == 999
        assert conn.execute("SELECT code FROM barcodes WHERE sku = 'P-0'").fetchall() == [(ean13("691111111111"),)]

    csv_out = tmp_path / "out.csv"
    assert run(cfg, "catalog", "export", str(csv_out)).returncode == 0
    text = csv_out.read_bytes()
    assert text.startswith(b"\xef\xbb\xbf")          # BOM: Excel opens the Chinese names intact
    assert "商品1号" in text.decode("utf-8-sig")


@pytest.mark.parametrize("content, needle", [
    (b"\xff\xfe\x00garbage", "neither UTF-8 nor GBK"),
    ("sku,name,price_fen,colour\nA,B,1,red\n".encode(), "unknown CSV columns: colour"),
])
def test_unreadable_files_are_refused_whole(tmp_path, cfg, content, needle):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = run(cfg, "catalog", "import", str(path))
    assert result.returncode == 2 and needle in result.stderr


def test_bad_json_file(tmp_path, cfg):
    path = tmp_path / "bad.json"
    path.write_text('{"products": 3}')
    result = run(cfg, "catalog", "import", str(path))
    assert result.returncode == 2 and "a JSON catalog is a list" in result.stderr


def test_ledger_verify_names_the_broken_sku(tmp_path, cfg):
    src = tmp_path / "in.json"
    src.write_text(json.dumps([{"sku": "OK-1", "name": "好", "price_fen": 1}, {"sku": "BAD-1", "name": "坏",
                                                                              "price_fen": 1}]))
    assert run(cfg, "catalog", "import", str(src)).returncode == 0
    with db(cfg) as conn:
        conn.execute("INSERT INTO stock_moves (sku, qty, reason, device, created_at) VALUES "
                     "('OK-1', 5, 'receipt', 't', 'now'), ('BAD-1', 5, 'receipt', 't', 'now')")
        conn.execute("UPDATE stock_balances SET on_hand = 5")
    ok = run(cfg, "ledger", "verify")
    assert ok.returncode == 0 and "2 moves" in ok.stdout

    with db(cfg) as conn:   # a balance edited behind the ledger's back
        conn.execute("UPDATE stock_balances SET on_hand = 7 WHERE sku = 'BAD-1'")
    bad = run(cfg, "ledger", "verify")
    assert bad.returncode == 1
    assert "BAD-1: balance on hand 7, reserved 0; moves sum to on hand 5, reserved 0" in bad.stdout
    assert "OK-1" not in bad.stdout


def test_moves_are_append_only(cfg):
    assert run(cfg, "ledger", "verify").returncode == 0   # creates the database
    with db(cfg) as conn:
        conn.execute("INSERT INTO products (sku, name, price_fen, updated_at) VALUES ('X', 'x', 1, 'now')")
        conn.execute("INSERT INTO stock_moves (sku, qty, reason, device, created_at) VALUES ('X', 1, 'receipt', 't', 'n')")
        for statement in ("UPDATE stock_moves SET qty = 2", "DELETE FROM stock_moves"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO stock_moves (sku, qty, reason, device, created_at) "
                         "VALUES ('X', 1, 'theft', 't', 'n')")


def test_token_commands(cfg):
    added = run(cfg, "token", "add", "till-1")
    assert added.returncode == 0
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("se_")
    with db(cfg) as conn:
        assert token not in str(conn.execute("SELECT * FROM api_tokens").fetchall())   # only a hash is kept
    assert "till-1" in run(cfg, "token", "list").stdout
    assert run(cfg, "token", "revoke", "till-1").returncode == 0
    assert run(cfg, "token", "revoke", "till-1").returncode == 1
    assert run(cfg, "token", "add", "bad name!").returncode == 2


def test_import_commits_in_chunks_so_the_daemon_can_write_between_them(tmp_path, cfg, monkeypatch, capsys):
    from edge.ops import cli
    from edge.store import catalog

    rows = "".join(f"C-{n},商品{n},1.00,件,,,\n" for n in range(1, 6)) + "C-2,重复,1,件,,,\n"
    path = tmp_path / "catalog.csv"
    path.write_text("sku,name,price,unit,category,low_stock,barcodes\n" + rows, encoding="utf-8")
    assert run(cfg, "catalog", "export", str(tmp_path / "empty.csv")).returncode == 0  # creates the store
    committed = []

    class Seen:
        """At each row: how many products another connection (the daemon) can already see."""

        def __init__(self, label):
            pass

        def __call__(self, done, total):
            probe = db(cfg)
            try:
                committed.append(probe.execute("SELECT count(*) FROM products").fetchone()[0])
            finally:
                probe.close()

        def done(self):
            pass

    monkeypatch.setattr(catalog, "IMPORT_CHUNK_ROWS", 2)
    monkeypatch.setattr(cli, "Progress", Seen)
    assert cli.main(["catalog", "import", str(path), "--config", str(cfg)]) == 1   # the duplicate row
    # rows 1-2 are visible (committed) while rows 3-4 are imported, rows 1-4 while 5-6 are
    assert committed == [0, 0, 2, 2, 4, 4]
    out = capsys.readouterr().out   # the report is the one of a single transaction, across chunks too
    assert "5 of 6 products imported, 1 rows refused" in out and "row 6 (SKU C-2): SKU C-2 is already on row 2" in out
    conn = db(cfg)
    assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 5


@pytest.mark.parametrize("command", [["catalog", "export", "-"], ["catalog", "export", "-", "--format", "json"]])
def test_export_to_a_pipe_the_reader_closed_is_quiet(cfg, command):
    """Issue 15 item 19: `store-edge catalog export - | head` printed a BrokenPipeError traceback.
    The reader here closes before the first byte (head -0): the write meets a closed pipe for sure."""
    proc = subprocess.Popen([sys.executable, "-m", "edge", *command, "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr, stderr


def test_python_m_edge_ops_demo_runs_as_a_module(tmp_path, cfg):
    """Issue 15 item 19: `python -m edge.demo` raised NameError (before the move to edge/ops/demo, its
    `__main__` block ran before the names below it). Both module entries get as far as their checks."""
    assert run(cfg, "catalog", "export", str(tmp_path / "out.csv")).returncode == 0  # a real store now
    for entry in (["-m", "edge.ops.demo"], ["-m", "edge", "demo"]):
        proc = subprocess.run([sys.executable, *entry, "--config", str(cfg), "--for", "5"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "holds a store that the demo did not make" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
