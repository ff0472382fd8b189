"""The product catalog: products, their barcodes, lookup, and CSV/JSON import and export."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Callable, Iterable, Iterator

from pydantic import ValidationError

from edge.core.errors import InputError, NotFound, validation_fields
from edge.core.schemas import ProductRef
from edge.core.sqlite import transaction
from edge.store.pinyin import name_keys
from protocol.changes import ProductIn

# rows per transaction of an import from the command line: each commit lets the running daemon's
# writer in (a sale waits for one chunk at most, not for the whole file)
IMPORT_CHUNK_ROWS = 500
CSV_COLUMNS = ("sku", "name", "price_fen", "unit", "category", "low_stock", "barcodes", "active")
BARCODE_SEPARATOR = "|"
# a product as the API shows it (the pinyin keys are the search's, not the product's)
PRODUCT_COLUMNS = "sku, name, price_fen, unit, category, low_stock, active, updated_at"


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

@dataclass
class RowError:
    row: int          # 1-based data row (CSV: the line below the header is row 1)
    sku: str | None
    problems: list[str]

    def __str__(self) -> str:
        return f"row {self.row}" + (f" (SKU {self.sku})" if self.sku else "") + ": " + "; ".join(self.problems)


@dataclass
class ImportReport:
    total: int = 0
    imported: int = 0
    errors: list[RowError] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict, repr=False)  # SKU -> its row, across chunks


def read_rows(data: bytes, fmt: str) -> list[dict]:
    """Rows of a CSV or JSON catalog file as dicts of raw values.

    CSV from Excel in China is often GBK: UTF-8 (with or without BOM) is tried first, then GB18030.
    """
    if fmt == "json":
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError("bad_file", f"not a JSON catalog: {exc}")
        rows = doc.get("products") if isinstance(doc, dict) else doc
        if not isinstance(rows, list):
            raise InputError("bad_file", 'a JSON catalog is a list of products or {"products": [...]}')
        return rows
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            raise InputError("bad_file", "the CSV file is neither UTF-8 nor GBK/GB18030 text")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [h for h in header if h not in CSV_COLUMNS and h != "price"]
    if unknown:
        raise InputError("bad_file", f"unknown CSV columns: {', '.join(unknown)} "
                                     f"(known: {', '.join(CSV_COLUMNS)}, price)")
    return list(reader)


def product_from_csv(row: dict) -> dict:
    """CSV cells are text: turn them into the types ProductIn expects, refusing what is ambiguous."""
    if (row.get("price_fen") or "").strip() and (row.get("price") or "").strip():
        raise ValueError("give price (yuan) or price_fen, not both")
    out: dict = {}
    for key, value in row.items():
        if key is None:
            raise ValueError("the row has more cells than the header")
        value = (value or "").strip()
        if key == "price" and value:
            try:
                yuan = Decimal(value)
            except InvalidOperation:
                raise ValueError(f"price: {value!r} is not a number of yuan")
            fen = yuan * 100
            if fen != fen.to_integral_value():
                raise ValueError(f"price: {value!r} has more than two decimals")
            out["price_fen"] = int(fen)
        elif key in ("price_fen", "low_stock") and value:
            if not value.lstrip("-").isdigit():
                raise ValueError(f"{key}: {value!r} is not a whole number")
            out[key] = int(value)
        elif key == "barcodes":
            out[key] = [c.strip() for c in value.split(BARCODE_SEPARATOR) if c.strip()]
        elif key == "active" and value:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(f"active: {value!r} is not 1/0 or true/false")
            out[key] = value.lower() in ("1", "true", "yes")
        elif value and key not in ("price", "price_fen", "low_stock", "active"):
            out[key] = value
    return out


def import_products(conn: sqlite3.Connection, rows: list, fmt: str, now: str,
                    progress: Callable[[int, int], None] | None = None, *, report: ImportReport | None = None,
                    start: int = 0, stop: int | None = None) -> ImportReport:
    """Import every valid row of rows[start:stop] into `report`; report each invalid one. Runs in the
    caller's transaction, each row under a savepoint, so a row that fails half-way leaves nothing behind."""
    if report is None:
        report = ImportReport(total=len(rows))
    seen = report.seen
    for number, raw in enumerate(rows[start:stop], start=start + 1):
        sku = raw.get("sku") if isinstance(raw, dict) else None
        try:
            if not isinstance(raw, dict):
                raise ValueError("a product must be an object")
            product = ProductIn.model_validate(product_from_csv(raw) if fmt == "csv" else raw)
            if product.sku in seen:
                raise ValueError(f"SKU {product.sku} is already on row {seen[product.sku]}")
            conn.execute("SAVEPOINT product_row")
            try:
                upsert_product(conn, product, now)
            except BaseException:
                conn.execute("ROLLBACK TO product_row")
                raise
            finally:
                conn.execute("RELEASE product_row")
            seen[product.sku] = number
            report.imported += 1
        except ValidationError as exc:
            report.errors.append(RowError(number, sku, [f"{f['field']}: {f['reason']}"
                                                        for f in validation_fields(exc)]))
        except (ValueError, InputError) as exc:
            report.errors.append(RowError(number, sku, [str(exc)]))
        if progress:
            progress(number, report.total)
    return report


def import_in_chunks(conn: sqlite3.Connection, rows: list, fmt: str, now: str,
                     progress: Callable[[int, int], None] | None = None,
                     chunk: int | None = None) -> ImportReport:
    """import_products in transactions of `chunk` rows (IMPORT_CHUNK_ROWS), for a connection of its
    own beside a running daemon. The report is the same as in one transaction; a crash keeps the
    chunks already committed, and importing the file again finishes the job (rows are upserts)."""
    size = chunk or IMPORT_CHUNK_ROWS
    report = ImportReport(total=len(rows))
    for start in range(0, len(rows), size):
        with transaction(conn):
            import_products(conn, rows, fmt, now, progress, report=report, start=start, stop=start + size)
    return report


# -- export ---------------------------------------------------------------------------------------

def iter_products(conn: sqlite3.Connection) -> Iterator[dict]:
    barcodes: dict[str, list[str]] = {}
    for code, sku in conn.execute("SELECT code, sku FROM barcodes ORDER BY rowid"):
        barcodes.setdefault(sku, []).append(code)
    for row in conn.execute("SELECT sku, name, price_fen, unit, category, low_stock, active "
                            "FROM products ORDER BY sku"):
        product = dict(row)
        product["active"] = bool(product["active"])
        product["barcodes"] = barcodes.get(product["sku"], [])
        yield product


def export_products(products: Iterable[dict], fmt: str, out: io.TextIOBase) -> int:
    count = 0
    if fmt == "json":
        items = list(products)
        json.dump({"products": items}, out, ensure_ascii=False, indent=1)
        out.write("\n")
        return len(items)
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for product in products:
        writer.writerow({**product, "barcodes": BARCODE_SEPARATOR.join(product["barcodes"]),
                         "active": int(product["active"]), "category": product["category"] or ""})
        count += 1
    return count
