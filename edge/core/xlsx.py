"""One-sheet Excel workbooks (.xlsx) written row by row with openpyxl's write-only mode, so that a
year of stock moves never sits in memory as cells. Money is a number of yuan with a ￥ format (a
spreadsheet can add it up), times are the store's local time as Excel dates, and the last row holds
the totals of the columns that have one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

MONEY_FORMAT = '"￥"#,##0.00;-"￥"#,##0.00'
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
MAX_ROWS = 1_048_576 - 2  # Excel's rows, less the header and the totals
MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Column:
    header: str
    kind: str = "text"     # text, int, money (fen in, yuan out), time (UTC ISO stamp in, local time out)
    width: float = 14
    total: bool = False    # summed in the totals row


def _local(stamp: str | None, tz: ZoneInfo) -> datetime | None:
    if not stamp:
        return None
    # Excel has no time zones: the store's wall-clock time, as staff read it on the receipts
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(tz).replace(tzinfo=None)


def write(target: IO[bytes], title: str, columns: list[Column], rows: Iterable[list[Any]], tz: ZoneInfo,
          total_label: str = "合计", cut_label: str = "：行数已达 Excel 上限，其余未导出，请缩短日期范围") -> dict:
    """Write the sheet to `target`; the answer says how many rows and the totals (fen for money)."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    for index, column in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)

    def cell(value, column: Column, font=None):
        if font is None and column.kind not in ("money", "time"):
            return value  # a plain value: a styled cell object per value would take most of the time
        out = WriteOnlyCell(sheet, value=value)
        if column.kind == "money" and value is not None:
            out.value = value / 100
            out.number_format = MONEY_FORMAT
        elif column.kind == "time":
            out.value = _local(value, tz)
            out.number_format = TIME_FORMAT
        if font is not None:
            out.font = font
        return out

    header = []
    for column in columns:
        c = WriteOnlyCell(sheet, value=column.header)
        c.font = bold
        header.append(c)
    sheet.append(header)
    totals = [0] * len(columns)
    count = 0
    cut = False
    for row in rows:
        if count == MAX_ROWS:
            cut = True  # Excel opens no more rows than that: the totals row says the sheet stops short
            break
        count += 1
        for index, (value, column) in enumerate(zip(row, columns)):
            if column.total and value is not None:
                totals[index] += value
        sheet.append([cell(value, column) for value, column in zip(row, columns)])
    last = [cell(totals[i] if column.total else None, column, bold) for i, column in enumerate(columns)]
    last[0] = WriteOnlyCell(sheet, value=f"{total_label}（{count}）" + (cut_label if cut else ""))
    last[0].font = bold
    sheet.append(last)
    book.save(target)
    return {"rows": count, "cut": cut, "totals": {c.header: totals[i] for i, c in enumerate(columns) if c.total}}
