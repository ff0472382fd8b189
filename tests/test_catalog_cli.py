"""`store-edge catalog import/export` and `store-edge ledger verify`, run as real commands."""

import json
import os
import pty
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
    # rows as Excel numbers them: the header is row 1
    for row, text in [(4, "price: 'abc' is not a number of yuan"), (5, "more than two decimals"),
                      (6, f"barcode {taken} already belongs to SKU A-2"), (7, "check digit is 3, should be 2"),
                      (8, "SKU A-1 is already on row 2"), (9, "sku:")]:
        assert any(line.strip().startswith(f"第 {row} 行 (row {row}") and text in line
                   for line in result.stdout.splitlines()), (row, result.stdout)
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
    assert "5 of 6 products imported, 1 rows refused" in out and "(row 7, SKU C-2): 商品编码 C-2 与第 3 行重复 / SKU C-2 is already on row 3" in out
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


# -- a catalog as a manager makes it in Excel (issue 14 item 6) -------------------------------------

EXCEL_HEADER = "商品编码,商品名称,售价,单位,分类,库存预警,条形码,是否启用"


def excel_csv(rows: list[str], encoding: str) -> bytes:
    """What Excel's 'CSV UTF-8' (BOM) or plain 'CSV' on a Chinese Windows (GBK) saves: CRLF rows,
    trailing empty rows of commas where a cell was once formatted."""
    text = "\r\n".join([EXCEL_HEADER, *rows, ",,,,,,,", ",,,,,,,"]) + "\r\n"
    if encoding == "utf-8-sig":
        return ("\ufeff" + text).encode("utf-8")
    return text.replace("¥", "￥").encode("gbk")   # GBK has only the full-width sign


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk"])
def test_excel_csv_with_chinese_headers_yuan_signs_and_yes_no(tmp_path, cfg, encoding):
    water, cola = ean13("690123456789"), ean13("690123456790")
    path = tmp_path / "商品.csv"
    path.write_bytes(excel_csv([
        f"B-1,农夫山泉 550ml,￥2.00,瓶,饮料,5,{water},是",
        f'B-2,可口可乐 330ml,"¥1,234.50",罐,饮料,,{cola},否',
        "B-3,散装花生,12.00元,斤,零食,,,",
        "B-4,口香糖,3.5,,,,,1",
    ], encoding))
    result = run(cfg, "catalog", "import", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "导入 4 个商品，共 4 行，0 行未导入" in result.stdout
    with db(cfg) as conn:
        assert conn.execute("SELECT sku, name, price_fen, unit, category, low_stock, active FROM products "
                            "ORDER BY sku").fetchall() == [
            ("B-1", "农夫山泉 550ml", 200, "瓶", "饮料", 5, 1), ("B-2", "可口可乐 330ml", 123450, "罐", "饮料", 0, 0),
            ("B-3", "散装花生", 1200, "斤", "零食", 0, 1), ("B-4", "口香糖", 350, "件", None, 0, 1)]
        assert conn.execute("SELECT code, sku FROM barcodes ORDER BY sku").fetchall() == [(water, "B-1"), (cola, "B-2")]


def test_excel_rows_are_refused_by_excel_row_number_in_chinese(tmp_path, cfg):
    path = tmp_path / "商品.csv"
    path.write_bytes(excel_csv([
        f"C-1,好的,￥2.00,瓶,,,{ean13('690123456789')},是",
        "C-2,科学计数法,￥3.00,瓶,,,6.90208E+12,是",          # Excel's display of a 13-digit barcode
        "C-3,坏布尔,￥3.00,瓶,,,,也许",
        "C-4,坏价格,￥三块,瓶,,,,",
        ",没有编码,1,瓶,,,,",
    ], "gbk"))
    result = run(cfg, "catalog", "import", str(path))
    assert result.returncode == 1
    assert "导入 1 个商品，共 5 行，4 行未导入 / 1 of 5 products imported, 4 rows refused" in result.stdout
    lines = result.stdout.splitlines()
    for row, texts in [(3, ["条码 6.90208E+12 被 Excel 变成了科学计数法", "设为“文本”格式",
                            "scientific notation"]),
                       (4, ["启用 '也许' 应填 是 或 否"]), (5, ["售价 '￥三块' 不是金额", "not a number of yuan"]),
                       (6, ["商品编码必须填写", "sku: required field is missing"])]:
        assert any(line.strip().startswith(f"第 {row} 行 (row {row}") and all(t in line for t in texts)
                   for line in lines), (row, result.stdout)
    with db(cfg) as conn:
        assert conn.execute("SELECT sku FROM products").fetchall() == [("C-1",)]
        assert conn.execute("SELECT count(*) FROM barcodes WHERE code LIKE '%E+%'").fetchone()[0] == 0


@pytest.mark.parametrize("name, content", [
    ("empty.csv", b""),
    ("bom.csv", b"\xef\xbb\xbf"),
    ("header.csv", (EXCEL_HEADER + "\r\n").encode("gbk")),
    ("blank-rows.csv", ("\ufeff" + EXCEL_HEADER + "\r\n,,,,,,,\r\n\r\n").encode()),
    ("empty.json", b'{"products": []}'),
])
def test_a_file_without_products_is_an_error(tmp_path, cfg, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    result = run(cfg, "catalog", "import", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "没有商品" in result.stderr and "has no product" in result.stderr
    assert not (cfg.parent / "var" / "store.db").exists()   # refused before the store is opened


def test_export_keeps_barcodes_as_text_for_excel_and_imports_back(tmp_path, cfg):
    upc, ean = "036000291452", ean13("690123456789")
    src = tmp_path / "in.json"
    src.write_text(json.dumps([{"sku": "D-1", "name": "美国货", "price_fen": 100, "barcodes": [upc]},
                               {"sku": "D-2", "name": "两个条码", "price_fen": 200, "barcodes": [ean, "ABC-1"]},
                               {"sku": "D-3", "name": "科学", "price_fen": 1, "barcodes": ["6.90208E+12"]}],
                              ensure_ascii=False))
    result = run(cfg, "catalog", "import", str(src))
    assert result.returncode == 1 and "第 3 行" in result.stdout and "scientific notation" in result.stdout
    out = tmp_path / "out.csv"
    assert run(cfg, "catalog", "export", str(out)).returncode == 0
    text = out.read_bytes().decode("utf-8-sig")
    # a bare 036000291452 opens in Excel as 36000291452, and 13 digits as 6.90123E+12
    assert f'"=""{upc}"""' in text and f"{ean}|ABC-1" in text and "E+" not in text
    with db(cfg) as conn:
        conn.execute("DELETE FROM barcodes")
    assert run(cfg, "catalog", "import", str(out)).returncode == 0
    with db(cfg) as conn:
        assert conn.execute("SELECT code, sku FROM barcodes ORDER BY rowid").fetchall() == [
            (upc, "D-1"), (ean, "D-2"), ("ABC-1", "D-2")]


def run_on_a_terminal(cfg: Path, *args: str) -> tuple[int, str]:
    """The command with its stderr on a pseudo-terminal, as a person at a shell sees it."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "edge", *args, "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:   # EIO: the command closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return proc.wait(timeout=60), seen.decode()


def test_progress_bar_on_a_terminal_for_import_and_export(tmp_path, cfg):
    path = tmp_path / "many.csv"
    path.write_bytes(excel_csv([f"E-{n},商品{n},1.00,件,,,,是" for n in range(300)], "utf-8-sig"))
    code, seen = run_on_a_terminal(cfg, "catalog", "import", str(path))
    assert code == 0 and "\r导入 import [" in seen and f"[{'#' * 25}] 302/302" in seen, seen
    code, seen = run_on_a_terminal(cfg, "catalog", "export", str(tmp_path / "out.csv"))
    assert code == 0 and "\r导出 export [" in seen and f"[{'#' * 25}] 300/300" in seen, seen
    # not a terminal (a script, a log): no bar, only the counts
    for args in (["import", str(path)], ["export", str(tmp_path / "out.csv")]):
        result = run(cfg, "catalog", *args)
        assert result.returncode == 0 and "[" not in result.stderr and "#" not in result.stderr, result.stderr
