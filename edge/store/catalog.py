"""The product catalog: products, their barcodes, lookup, and CSV/JSON import and export."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Callable, Iterable, Iterator

from pydantic import ValidationError

from edge.core.errors import InputError, NotFound, validation_fields
from edge.core.schemas import ProductRef
from edge.core.sqlite import transaction
from edge.store.pinyin import name_keys
from edge.store.tables import Columns, bad_file, read_table
from protocol.changes import ProductIn

# rows per transaction of an import from the command line: each commit lets the running daemon's
# writer in (a sale waits for one chunk at most, not for the whole file)
IMPORT_CHUNK_ROWS = 500
CSV_COLUMNS = ("sku", "name", "price_fen", "unit", "category", "low_stock", "barcodes", "active", "shelf")
BARCODE_SEPARATOR = "|"
# a product as the API shows it (the pinyin keys are the search's, not the product's)
PRODUCT_COLUMNS = "sku, name, price_fen, unit, category, low_stock, active, shelf, updated_at"
# Where a product stands in this store (货架: "A-03", "冷柜2"): the store's own, not the chain's, so
# the cloud's product.upserted never carries or changes it; the catalog import sets it
SHELF_MAX = 32


def resolve_sku(conn: sqlite3.Connection, ref: ProductRef, field_name: str) -> str:
    """The SKU a line names, by SKU or barcode; InputError naming the field if there is none."""
    if ref.sku is not None:
        row = conn.execute("SELECT sku FROM products WHERE sku = ?", (ref.sku,)).fetchone()
        if row is None:
            raise InputError("unknown_sku", f"no product with SKU {ref.sku}", field=f"{field_name}.sku")
        return row[0]
    sku = sku_for_barcode(conn, ref.barcode)
    if sku is None:
        raise InputError("unknown_barcode", f"no product with barcode {ref.barcode}", field=f"{field_name}.barcode")
    return sku


def has_product(conn: sqlite3.Connection, sku: str) -> bool:
    return conn.execute("SELECT 1 FROM products WHERE sku = ?", (sku,)).fetchone() is not None


def sku_for_barcode(conn: sqlite3.Connection, code: str) -> str | None:
    row = conn.execute("SELECT sku FROM barcodes WHERE code = ?", (code,)).fetchone()
    return row[0] if row else None


def get_product(conn: sqlite3.Connection, sku: str) -> dict:
    row = conn.execute(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE sku = ?", (sku,)).fetchone()
    if row is None:
        raise NotFound("unknown_sku", f"no product with SKU {sku}", field="sku")
    product = dict(row)
    product["active"] = bool(product["active"])
    product["barcodes"] = [r[0] for r in conn.execute(
        "SELECT code FROM barcodes WHERE sku = ? ORDER BY rowid", (sku,))]
    return product


def product_by_barcode(conn: sqlite3.Connection, code: str) -> dict:
    sku = sku_for_barcode(conn, code)
    if sku is None:
        raise NotFound("unknown_barcode", f"no product with barcode {code}", field="code")
    return get_product(conn, sku)


def upsert_product(conn: sqlite3.Connection, product: ProductIn, now: str) -> None:
    """Create or update a product; its barcodes become exactly the given list."""
    for code in product.barcodes:
        owner = conn.execute("SELECT sku FROM barcodes WHERE code = ?", (code,)).fetchone()
        if owner is not None and owner[0] != product.sku:
            raise InputError("barcode_taken", f"barcode {code} already belongs to SKU {owner[0]}",
                             field="barcodes")
    conn.execute(
        "INSERT INTO products (sku, name, price_fen, unit, category, low_stock, active, updated_at, "
        "name_pinyin, name_initials) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sku) DO UPDATE SET name = excluded.name, "
        "price_fen = excluded.price_fen, unit = excluded.unit, category = excluded.category, "
        "low_stock = excluded.low_stock, active = excluded.active, updated_at = excluded.updated_at, "
        "name_pinyin = excluded.name_pinyin, name_initials = excluded.name_initials",
        (product.sku, product.name, product.price_fen, product.unit, product.category, product.low_stock,
         int(product.active), now, *name_keys(product.name)))
    conn.execute("INSERT OR IGNORE INTO stock_balances (sku, on_hand, reserved, updated_at) "
                 "VALUES (?, 0, 0, ?)", (product.sku, now))
    conn.execute(f"DELETE FROM barcodes WHERE sku = ? AND code NOT IN ({','.join('?' * len(product.barcodes))})",
                 (product.sku, *product.barcodes))
    conn.executemany("INSERT OR IGNORE INTO barcodes (code, sku) VALUES (?, ?)",
                     [(code, product.sku) for code in product.barcodes])


# -- import ---------------------------------------------------------------------------------------

# what a manager writes as a column header in Excel -> the column; English headers match ignoring case
HEADER_ALIASES = {
    "商品编码": "sku", "编码": "sku", "货号": "sku",
    "商品名称": "name", "名称": "name", "品名": "name",
    "售价": "price", "价格": "price", "单价": "price", "售价(元)": "price", "售价（元）": "price",
    "售价(分)": "price_fen", "售价（分）": "price_fen",
    "单位": "unit",
    "分类": "category", "类别": "category",
    "库存预警": "low_stock", "低库存": "low_stock", "预警库存": "low_stock",
    "条码": "barcodes", "条形码": "barcodes", "商品条码": "barcodes",
    "启用": "active", "是否启用": "active", "状态": "active",
    "货架": "shelf", "货位": "shelf", "位置": "shelf", "陈列位置": "shelf",
}
COLUMN_ZH = {"sku": "商品编码", "name": "商品名称", "price": "售价", "price_fen": "售价(分)", "unit": "单位",
             "category": "分类", "low_stock": "库存预警", "barcodes": "条码", "active": "启用",
             "shelf": "货架"}
COLUMNS = Columns(CSV_COLUMNS, HEADER_ALIASES, COLUMN_ZH, also=("price",))
TRUE_WORDS = ("1", "true", "yes", "y", "是", "启用", "在售")
FALSE_WORDS = ("0", "false", "no", "n", "否", "停用", "下架")
# Excel shows a long number such as 6902083881405 as 6.90208E+12, and saves the CSV that way: the
# digits after the sixth are gone, so no guess can bring the barcode back
SCIENTIFIC = re.compile(r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$")
EXCEL_TEXT = re.compile(r'^="(.*)"$')   # ="0123": how the export keeps digits as text in Excel
YUAN = re.compile(r"^(?:[￥¥]\s*)?(-?\d{1,3}(?:,\d{3})+(?:\.\d*)?|-?\d*(?:\.\d*)?)\s*(?:元)?$")


class RowProblem(ValueError):
    """A row's problem, said in Chinese for the staff and in English for the rest."""

    def __init__(self, zh: str, en: str):
        super().__init__(f"{zh} / {en}")


@dataclass
class RowError:
    row: int          # CSV: the row as Excel numbers it (the header is row 1); JSON: the product's place
    sku: str | None
    problems: list[str]

    def __str__(self) -> str:
        return (f"第 {self.row} 行 (row {self.row}" + (f", SKU {self.sku}" if self.sku else "") + "): "
                + "; ".join(self.problems))


@dataclass
class ImportReport:
    total: int = 0
    imported: int = 0
    errors: list[RowError] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict, repr=False)  # SKU -> its row, across chunks


def read_rows(data: bytes, fmt: str) -> list[dict]:
    """Rows of a CSV or JSON catalog file as dicts of raw values; a file without a product is refused.

    The CSV is read by edge.store.tables (UTF-8 or GBK, Excel's row numbers kept).
    """
    if fmt == "json":
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad_file("不是 JSON 商品文件", f"not a JSON catalog: {exc}")
        rows = doc.get("products") if isinstance(doc, dict) else doc
        if not isinstance(rows, list):
            raise bad_file("JSON 商品文件应是商品列表",
                            'a JSON catalog is a list of products or {"products": [...]}')
        if not rows:
            raise bad_file("文件里没有商品", "the file has no products")
        return rows
    return read_table(data, "csv", COLUMNS, what_zh="商品", what_en="product")


def excel_cell(value: str) -> str:
    """A cell as typed, without the ="…" the export wraps digits in."""
    value = (value or "").strip()
    text = EXCEL_TEXT.match(value)
    return text.group(1).strip() if text else value


def _refuse_scientific(column: str, value: str) -> None:
    if SCIENTIFIC.match(value):
        raise RowProblem(f"{COLUMN_ZH[column]} {value} 被 Excel 变成了科学计数法，后几位数字已丢失："
                         "请把这一列设为“文本”格式，重新输入后再导入",
                         f"{column}: {value} is a number Excel turned into scientific notation, its last "
                         "digits are lost: format the column as text, type the codes again and import again")


def _yuan_to_fen(value: str) -> int:
    match = YUAN.match(value)
    try:
        yuan = Decimal(match.group(1).replace(",", "")) if match else None
    except InvalidOperation:
        yuan = None
    if yuan is None:
        raise RowProblem(f"售价 {value!r} 不是金额", f"price: {value!r} is not a number of yuan")
    fen = yuan * 100
    if fen != fen.to_integral_value():
        raise RowProblem(f"售价 {value!r} 超过两位小数", f"price: {value!r} has more than two decimals")
    return int(fen)


def product_from_csv(row: dict) -> dict:
    """CSV cells are text: turn them into the types ProductIn expects, refusing what is ambiguous."""
    if None in row:
        raise RowProblem("这一行的格子比表头多", "the row has more cells than the header")
    row = {key: excel_cell(value) for key, value in row.items()}
    if row.get("price_fen") and row.get("price"):
        raise RowProblem("售价(元)和售价(分)只能填一个", "give price (yuan) or price_fen, not both")
    out: dict = {}
    for key, value in row.items():
        if key == "price" and value:
            out["price_fen"] = _yuan_to_fen(value)
        elif key in ("price_fen", "low_stock") and value:
            if not value.lstrip("-").isdigit():
                raise RowProblem(f"{COLUMN_ZH[key]} {value!r} 不是整数", f"{key}: {value!r} is not a whole number")
            out[key] = int(value)
        elif key == "barcodes":
            out[key] = [excel_cell(c) for c in value.split(BARCODE_SEPARATOR) if c.strip()]
            for code in out[key]:
                _refuse_scientific(key, code)
        elif key == "active" and value:
            if value.lower() not in TRUE_WORDS + FALSE_WORDS:
                raise RowProblem(f"启用 {value!r} 应填 是 或 否", f"active: {value!r} is not 是/否, 1/0 or true/false")
            out[key] = value.lower() in TRUE_WORDS
        elif value and key not in ("price", "price_fen", "low_stock", "active", "shelf"):
            if key == "sku":
                _refuse_scientific(key, value)
            out[key] = value
    return out


_KEEP = object()   # a file without a shelf column leaves each product's shelf as it is


def _shelf(raw: dict, fmt: str):
    """The row's shelf: _KEEP without the column, None for an empty cell (the product has none)."""
    if "shelf" not in raw:
        return _KEEP
    value = raw["shelf"]
    if fmt == "csv":
        value = excel_cell(value)
    if value is not None and not isinstance(value, str):
        raise RowProblem("货架应是文字", "shelf: must be text")
    if value and len(value.strip()) > SHELF_MAX:
        raise RowProblem(f"货架最多 {SHELF_MAX} 个字", f"shelf: at most {SHELF_MAX} characters")
    return (value or "").strip() or None


def _json_product(raw: dict) -> dict:
    raw = {key: value for key, value in raw.items() if key != "shelf"}
    barcodes = raw.get("barcodes")
    for code in barcodes if isinstance(barcodes, list) else ():
        if isinstance(code, str):
            _refuse_scientific("barcodes", code.strip())
    return raw


# pydantic's error types, said in Chinese (the English reason follows)
REASON_ZH = {"missing": "必须填写", "string_too_short": "不能为空", "string_too_long": "太长",
             "string_pattern_mismatch": "含有不允许的字符", "greater_than_equal": "太小", "less_than_equal": "太大",
             "too_long": "太多", "extra_forbidden": "不认识的字段", "value_error": "不正确"}


def _validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err, fields in zip(exc.errors(), validation_fields(exc)):
        column = str(err["loc"][0]) if err["loc"] else ""
        zh = REASON_ZH.get(err["type"], "不正确")
        if column == "" and "barcode" in fields["reason"]:
            column = "barcodes"
        name = COLUMN_ZH.get(column, column)
        prefix = f"{fields['field']}: " if fields["field"] != "(body)" else ""
        problems.append(f"{name}{zh} / {prefix}{fields['reason']}")
    return problems


_PROBLEM_ZH = {"barcode_taken": "条码已属于另一个商品"}


def import_products(conn: sqlite3.Connection, rows: list, fmt: str, now: str,
                    progress: Callable[[int, int], None] | None = None, *, report: ImportReport | None = None,
                    start: int = 0, stop: int | None = None) -> ImportReport:
    """Import every valid row of rows[start:stop] into `report`; report each invalid one. Runs in the
    caller's transaction, each row under a savepoint, so a row that fails half-way leaves nothing behind."""
    if report is None:
        report = ImportReport(total=count_rows(rows, fmt))
    seen = report.seen
    first = 2 if fmt == "csv" else 1   # Excel's row number: the header is row 1
    for index, raw in enumerate(rows[start:stop], start=start):
        number = index + first
        if fmt == "csv" and not raw:
            if progress:
                progress(index + 1, len(rows))
            continue
        sku = raw.get("sku") if isinstance(raw, dict) else None
        try:
            if not isinstance(raw, dict):
                raise RowProblem("每个商品应是一个对象", "a product must be an object")
            fields = product_from_csv(raw) if fmt == "csv" else _json_product(raw)
            shelf = _shelf(raw, fmt)
            product = ProductIn.model_validate(fields)
            if product.sku in seen:
                raise RowProblem(f"商品编码 {product.sku} 与第 {seen[product.sku]} 行重复",
                                 f"SKU {product.sku} is already on row {seen[product.sku]}")
            conn.execute("SAVEPOINT product_row")
            try:
                upsert_product(conn, product, now)
                if shelf is not _KEEP:
                    conn.execute("UPDATE products SET shelf = ? WHERE sku = ?", (shelf, product.sku))
            except BaseException:
                conn.execute("ROLLBACK TO product_row")
                raise
            finally:
                conn.execute("RELEASE product_row")
            seen[product.sku] = number
            report.imported += 1
        except ValidationError as exc:
            report.errors.append(RowError(number, sku, _validation_problems(exc)))
        except InputError as exc:
            zh = _PROBLEM_ZH.get(exc.code, "")
            report.errors.append(RowError(number, sku, [f"{zh} / {exc.message}" if zh else exc.message]))
        except ValueError as exc:
            report.errors.append(RowError(number, sku, [str(exc)]))
        if progress:
            progress(index + 1, len(rows))
    return report


def count_rows(rows: list, fmt: str) -> int:
    """The products a file holds: a CSV's rows but the empty ones (Excel leaves some at the end)."""
    return sum(1 for row in rows if row != {}) if fmt == "csv" else len(rows)


def import_in_chunks(conn: sqlite3.Connection, rows: list, fmt: str, now: str,
                     progress: Callable[[int, int], None] | None = None,
                     chunk: int | None = None) -> ImportReport:
    """import_products in transactions of `chunk` rows (IMPORT_CHUNK_ROWS), for a connection of its
    own beside a running daemon. The report is the same as in one transaction; a crash keeps the
    chunks already committed, and importing the file again finishes the job (rows are upserts)."""
    size = chunk or IMPORT_CHUNK_ROWS
    report = ImportReport(total=count_rows(rows, fmt))
    for start in range(0, len(rows), size):
        with transaction(conn):
            import_products(conn, rows, fmt, now, progress, report=report, start=start, stop=start + size)
    return report


# -- export ---------------------------------------------------------------------------------------

def iter_products(conn: sqlite3.Connection) -> Iterator[dict]:
    barcodes: dict[str, list[str]] = {}
    for code, sku in conn.execute("SELECT code, sku FROM barcodes ORDER BY rowid"):
        barcodes.setdefault(sku, []).append(code)
    for row in conn.execute("SELECT sku, name, price_fen, unit, category, low_stock, active, shelf "
                            "FROM products ORDER BY sku"):
        product = dict(row)
        product["active"] = bool(product["active"])
        product["barcodes"] = barcodes.get(product["sku"], [])
        yield product


def count_products(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM products").fetchone()[0]


def excel_text(value: str) -> str:
    """A cell of digits as ="…": Excel would show 6901234567892 as 6.90123E+12 and drop leading
    zeros, and save it back so; a formula's text result keeps every digit (the import unwraps it)."""
    return f'="{value}"' if value.isdigit() else value


def export_products(products: Iterable[dict], fmt: str, out: io.TextIOBase,
                    progress: Callable[[int], None] | None = None) -> int:
    count = 0
    if fmt == "json":
        items = []
        for product in products:
            items.append(product)
            if progress:
                progress(len(items))
        json.dump({"products": items}, out, ensure_ascii=False, indent=1)
        out.write("\n")
        return len(items)
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for product in products:
        writer.writerow({**product, "sku": excel_text(product["sku"]),
                         "barcodes": excel_text(BARCODE_SEPARATOR.join(product["barcodes"])),
                         "active": int(product["active"]), "category": product["category"] or "",
                         "shelf": product["shelf"] or ""})
        count += 1
        if progress:
            progress(count)
    return count
