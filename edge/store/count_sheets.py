"""Count sheets (盘点单): a category's or a shelf's products listed for a blind count, and its counts
entered once.

A sheet lists what to count (SKU, barcode, name, unit) and never the expected quantity: staff who
see the number tend to find it. Its counts become one count document (stock.record_count), whose
differences are taken against the balance when the counts are entered, not when the sheet was made:
the moves in between (a sale while counting) are the store's reality, and the entry form marks the
lines that moved since the sheet was made so that a manager can recount them first.
"""

from __future__ import annotations

import sqlite3

from edge.core.context import WriteContext
from edge.core.errors import InputError, NotFound
from edge.core.schemas import CountIn
from edge.store import stock
from edge.store.catalog import RowError, excel_cell, excel_text, sku_for_barcode
from edge.store.tables import Columns, csv_text, read_table
from protocol.stock import RESERVATION_REASONS

MAX_LINES = 2000   # a longer sheet is metres of receipt paper and an afternoon's count: split it
MAX_COUNTED = 10_000_000
_RES = ", ".join(f"'{r}'" for r in RESERVATION_REASONS)

# the columns of a sheet's file (export and import): what a manager sees in Excel
COLUMNS = Columns(("line", "sku", "barcode", "name", "unit", "counted"),
                  {"行号": "line", "序号": "line", "商品编码": "sku", "编码": "sku", "货号": "sku",
                   "条码": "barcode", "条形码": "barcode", "商品名称": "name", "名称": "name", "品名": "name",
                   "单位": "unit", "实盘数量": "counted", "实盘": "counted", "盘点数量": "counted"},
                  {"line": "行号", "sku": "商品编码", "barcode": "条码", "name": "商品名称", "unit": "单位",
                   "counted": "实盘数量"})


def _refused(code: str, zh: str, en: str, *, status: int = 422, field: str | None = None,
             rows: list[str] | None = None) -> InputError:
    detail = {"message_zh": zh, **({"rows": rows} if rows else {})}
    return InputError(code, en, field=field, status=status, detail=detail)


# -- making a sheet -------------------------------------------------------------------------------

def _groups(conn: sqlite3.Connection, column: str) -> list[dict]:
    rows = conn.execute(f"SELECT nullif({column}, '') AS name, count(*) AS products FROM products "
                        "WHERE active = 1 GROUP BY 1 ORDER BY 1 IS NULL, 1").fetchall()
    return [dict(r) for r in rows]


def categories(conn: sqlite3.Connection) -> list[dict]:
    """Each category of active products (name, products); name None: the products without one."""
    return _groups(conn, "category")


def shelves(conn: sqlite3.Connection) -> list[dict]:
    """Each shelf of active products, as categories()."""
    return _groups(conn, "shelf")


def create_sheet(conn: sqlite3.Connection, ctx: WriteContext, *, category: str | None = None,
                 shelf: str | None = None) -> dict:
    """A sheet of the active products of a category and/or a shelf (None: any; "": those without
    one), in the order staff walk them: by shelf, then by the pinyin of the name."""
    if category is None and shelf is None:
        raise _refused("no_scope", "请选择分类或货架", "give a category, a shelf or both", field="category")
    where, args = ["active = 1"], []
    for column, value in (("category", category), ("shelf", shelf)):
        if value is not None:
            where.append(f"coalesce({column}, '') = ?")
            args.append(value)
    skus = [r[0] for r in conn.execute(f"SELECT sku FROM products WHERE {' AND '.join(where)} "
                                       "ORDER BY coalesce(shelf, '') = '', shelf, name_pinyin, sku LIMIT ?",
                                       (*args, MAX_LINES + 1))]
    if not skus:
        raise _refused("empty_sheet", "这个分类或货架没有在售商品", "no active product there", field="category")
    if len(skus) > MAX_LINES:
        raise _refused("sheet_too_long", f"超过 {MAX_LINES} 个商品，一张盘点单放不下：请按货架或分类分开",
                       f"more than {MAX_LINES} products: too many for one sheet, split it by shelf or category",
                       field="category")
    last_move = conn.execute("SELECT coalesce(max(id), 0) FROM stock_moves").fetchone()[0]
    number = conn.execute("INSERT INTO count_sheets (category, shelf, created_by, created_at, last_move_id) "
                          "VALUES (?, ?, ?, ?, ?)", (category, shelf, ctx.device, ctx.now, last_move)).lastrowid
    conn.executemany("INSERT INTO count_sheet_lines (sheet_number, line_no, sku) VALUES (?, ?, ?)",
                     [(number, no, sku) for no, sku in enumerate(skus, start=1)])
    return get_sheet(conn, number)


# -- reading one ----------------------------------------------------------------------------------

def get_sheet(conn: sqlite3.Connection, number: int) -> dict:
    """The sheet and its lines (first barcode of each product); once counted, each line's count and
    difference; before, `moved`: the product's stock moved since the sheet was made."""
    sheet = conn.execute("SELECT * FROM count_sheets WHERE number = ?", (number,)).fetchone()
    if sheet is None:
        raise NotFound("unknown_count_sheet", f"no count sheet {number}")
    out = dict(sheet)
    lines = conn.execute(
        "SELECT l.line_no, l.sku, p.name, p.unit, p.shelf, "
        "(SELECT code FROM barcodes c WHERE c.sku = l.sku ORDER BY rowid LIMIT 1) AS barcode, "
        "(SELECT 1 FROM stock_moves m WHERE m.sku = l.sku AND m.id > ? "
        f" AND m.reason NOT IN ({_RES}) LIMIT 1) IS NOT NULL AS moved "
        "FROM count_sheet_lines l JOIN products p USING (sku) WHERE l.sheet_number = ? ORDER BY l.line_no",
        (out["last_move_id"], number)).fetchall()
    out["lines"] = [dict(r) | {"moved": bool(r["moved"])} for r in lines]
    if out["document_id"]:
        counted = {line["sku"]: line for line in stock.get_document(conn, out["document_id"])["lines"]}
        for line in out["lines"]:
            done = counted.get(line["sku"])
            if done:
                line.update(counted=done["counted"], expected=done["expected"], difference=done["qty"])
    return out


def list_sheets(conn: sqlite3.Connection, limit: int = 20) -> list[dict]:
    rows = conn.execute("SELECT s.*, (SELECT count(*) FROM count_sheet_lines l WHERE l.sheet_number = s.number) "
                        "AS line_count FROM count_sheets s ORDER BY number DESC LIMIT ?", (limit,)).fetchall()
    return [dict(r) for r in rows]


# -- entering the counts --------------------------------------------------------------------------

def record_counts(conn: sqlite3.Connection, number: int, counts: dict[int, int], ctx: WriteContext, *,
                  note: str | None = None) -> dict:
    """The counts of a sheet's lines (line number -> counted; a line left out was not counted) as one
    count document. A sheet is counted once; a count of no line is refused."""
    sheet = get_sheet(conn, number)
    if sheet["document_id"]:
        raise _refused("sheet_counted", f"盘点单 #{number} 已经录入过了", f"count sheet {number} is already entered",
                       status=409)
    by_line = {line["line_no"]: line["sku"] for line in sheet["lines"]}
    for line_no, counted in counts.items():
        if line_no not in by_line:
            raise _refused("unknown_line", f"盘点单上没有第 {line_no} 行", f"the sheet has no line {line_no}")
        if not 0 <= counted <= MAX_COUNTED:
            raise _refused("bad_count", f"第 {line_no} 行的实盘数量应在 0 到 {MAX_COUNTED} 之间",
                           f"line {line_no}: the count must be from 0 to {MAX_COUNTED}")
    if not counts:
        raise _refused("nothing_counted", "没有填写任何实盘数量", "no line has a count")
    body = CountIn.model_validate({"lines": [{"sku": by_line[no], "counted": counts[no]} for no in sorted(counts)],
                                   "note": (f"盘点单 #{number}" + (f" {note}" if note else ""))[:200]})
    doc = stock.record_count(conn, body, ctx)
    conn.execute("UPDATE count_sheets SET document_id = ?, counted_at = ?, counted_by = ? WHERE number = ?",
                 (doc["id"], ctx.now, ctx.device, number))
    return get_sheet(conn, number)


def counts_from_rows(conn: sqlite3.Connection, number: int, rows: list[dict]) -> dict[int, int]:
    """A sheet's file, filled in: line number -> count. Every bad row is reported by its Excel row
    number (InputError bad_rows, detail.rows), and then nothing is counted: a half-imported count
    would leave the other half's differences unrecorded and look complete."""
    sheet = get_sheet(conn, number)
    line_of = {line["sku"]: line["line_no"] for line in sheet["lines"]}
    counts: dict[int, int] = {}
    seen: dict[str, int] = {}
    errors: list[RowError] = []
    for index, raw in enumerate(rows):
        excel_row = index + 2
        cell = {key: excel_cell(value) for key, value in raw.items() if key is not None}
        code = cell.get("barcode")
        sku = cell.get("sku") or (code and (sku_for_barcode(conn, code) or code)) or None
        problem = _row_problem(raw, cell, sku, line_of, seen)
        if problem:
            errors.append(RowError(excel_row, sku, [problem]))
            continue
        if cell.get("counted"):
            counts[line_of[sku]] = int(cell["counted"])
        if sku:
            seen[sku] = excel_row
    if errors:
        rows_text = [str(e) for e in errors]
        raise _refused("bad_rows", f"{len(errors)} 行有问题，什么也没有录入", f"{len(errors)} bad rows: nothing was "
                       "entered", rows=rows_text)
    if not counts:
        raise _refused("nothing_counted", "文件里没有填写任何实盘数量", "no row of the file has a count")
    return counts


def _row_problem(raw: dict, cell: dict, sku: str | None, line_of: dict, seen: dict) -> str | None:
    """What is wrong with one row, in Chinese and English; None for a good (or an empty) row."""
    if None in raw:
        return "这一行的格子比表头多 / the row has more cells than the header"
    if not raw:
        return None
    if not sku:
        return "缺少商品编码或条码 / no SKU or barcode"
    if sku not in line_of:
        return f"商品 {sku} 不在这张盘点单上 / {sku} is not on this count sheet"
    if sku in seen:
        return f"商品 {sku} 与第 {seen[sku]} 行重复 / {sku} is already on row {seen[sku]}"
    counted = cell.get("counted", "")
    if counted and not (counted.isdigit() and int(counted) <= MAX_COUNTED):
        if counted.startswith("-") and counted[1:].isdigit():
            return f"实盘数量 {counted} 不能小于 0 / the count {counted} is below 0"
        return f"实盘数量 {counted!r} 不是 0 到 {MAX_COUNTED} 的整数 / the count {counted!r} is not a whole number " \
               f"from 0 to {MAX_COUNTED}"
    return None


def read_file(data: bytes, fmt: str) -> list[dict]:
    return read_table(data, fmt, COLUMNS, what_zh="盘点", what_en="count")


def export_csv(sheet: dict) -> str:
    """The sheet as a table to fill in Excel: the header, then a line per product with an empty count."""
    header = [COLUMNS.zh[c] for c in COLUMNS.names]
    return csv_text([header] + [[str(line["line_no"]), excel_text(line["sku"]), excel_text(line["barcode"] or ""),
                        line["name"], line["unit"], ""] for line in sheet["lines"]])
