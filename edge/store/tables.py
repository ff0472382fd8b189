"""Sheets a manager makes in Excel, read as rows of text cells under known columns: a CSV (UTF-8,
with or without BOM, or GBK as Excel saves it on a Chinese Windows) or an .xlsx workbook's first
sheet. The catalog import and the count-sheet import both read their files here.

Row i of the list is row i + 2 in Excel (the header is row 1); empty rows are kept (as {}) so that
the numbers stay Excel's. Cells past the header's last column land under the key None.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import datetime

from edge.core.errors import InputError


@dataclass(frozen=True)
class Columns:
    """The columns a sheet may have: English names (as exports write them) and the headers a manager
    writes (Chinese, matched exactly; English, ignoring case)."""

    names: tuple[str, ...]
    aliases: dict[str, str]                 # header -> column
    zh: dict[str, str]                      # column -> its Chinese header, for messages
    also: tuple[str, ...] = field(default=())  # English names accepted besides `names`

    def of(self, header: str) -> str | None:
        name = header.strip()
        if name.lower() in self.names or name.lower() in self.also:
            return name.lower()
        return self.aliases.get(name)


def bad_file(zh: str, en: str) -> InputError:
    return InputError("bad_file", f"{zh} / {en}")


def read_table(data: bytes, fmt: str, columns: Columns, *, what_zh: str, what_en: str) -> list[dict]:
    """The rows of a CSV or xlsx file; refused (InputError bad_file, in Chinese and English) when a
    header is unknown or doubled, or no row has anything in it. what_*: what a row is ("商品", "product")."""
    records = _xlsx_records(data) if fmt == "xlsx" else csv.reader(io.StringIO(_text(data), newline=""))
    header = [str(h) if h is not None else "" for h in next(records, [])]
    names = [columns.of(h) for h in header]
    unknown = [h.strip() for h, c in zip(header, names) if c is None and h.strip()]
    if unknown:
        raise bad_file(f"不认识的列: {', '.join(unknown)}",
                       f"unknown {fmt.upper()} columns: {', '.join(unknown)} (known: "
                       f"{', '.join(columns.names + columns.also)}; or {', '.join(columns.zh.values())})")
    doubled = sorted({c for c in names if c and names.count(c) > 1})
    if doubled:
        raise bad_file(f"重复的列: {', '.join(columns.zh[c] for c in doubled)}",
                       f"columns given twice: {', '.join(doubled)}")
    rows = []
    for cells in records:
        if not any(cell.strip() for cell in cells):
            rows.append({})
            continue
        row = {c: cell for c, cell in zip(names, cells) if c}
        if len(cells) > len(names) and any(cell.strip() for cell in cells[len(names):]):
            row[None] = cells[len(names):]
        rows.append(row)
    if not any(rows):
        raise bad_file(f"文件里没有{what_zh}行（只有表头或是空文件）", f"the file has no {what_en} rows")
    return rows


def csv_text(rows) -> str:
    """Rows as a CSV for Excel: UTF-8 with a BOM (without it Excel on a Chinese Windows reads GBK) and CRLF."""
    out = io.StringIO()
    out.write("\ufeff")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("gb18030")
        except UnicodeDecodeError:
            raise bad_file("文件编码不是 UTF-8 也不是 GBK", "the CSV file is neither UTF-8 nor GBK/GB18030 text")


def _xlsx_records(data: bytes):
    """The first sheet's rows as lists of text, the way a CSV would hold them."""
    import openpyxl  # noqa: PLC0415 (only an xlsx import pays for loading it)

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise bad_file("不是 Excel 工作簿（.xlsx）", f"not an Excel .xlsx workbook: {exc.__class__.__name__}")
    try:
        for row in book.worksheets[0].iter_rows(values_only=True):
            yield [_cell_text(value) for value in row]
    finally:
        book.close()


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))   # Excel keeps every number as a float: 12 is 12.0
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)
