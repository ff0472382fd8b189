"""Pinyin keys of product names, so staff find 可乐 by typing `kele` or `kl` (issue 14).

Each product row keeps its name's full pinyin and its initials, written with the name
(catalog.upsert_product) and filled for older rows by the migration that added them: the search is
then a LIKE over columns, with no Python per row.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata

# letters and digits stay as they are; any other run (Chinese, punctuation) goes through pypinyin
_RUNS = re.compile(r"[0-9a-z]+|[^\x00-\x7f]+")
_ASCII_WORD = re.compile(r"[0-9a-z]+")


def name_keys(name: str) -> tuple[str, str]:
    """(full pinyin, initials) of a name, lower case, without tones or spaces: 可口可乐 500ml gives
    ("kekoukele500ml", "kkkl500ml"). One reading per character, chosen by pypinyin's phrase
    dictionary (银行 is yinhang); ü is written v, as pinyin keyboards type it."""
    # pypinyin's dictionaries take a third of a second to load: only a process that writes names pays
    from pypinyin import lazy_pinyin  # noqa: PLC0415

    full, initials = [], []
    # NFKC: full-width ５００ｍｌ are the digits and letters a keyboard types
    for run in _RUNS.findall(unicodedata.normalize("NFKC", name).lower()):
        if _ASCII_WORD.fullmatch(run):
            full.append(run)
            initials.append(run)
            continue
        for syllable in lazy_pinyin(run, errors="ignore"):
            syllable = "".join(_ASCII_WORD.findall(syllable.lower()))
            if syllable:
                full.append(syllable)
                initials.append(syllable[0])
    return "".join(full), "".join(initials)


def warm() -> None:
    """Load pypinyin's dictionaries now (the daemon does it on a worker thread at start), so that the
    first product written does not hold the store's writer for their third of a second."""
    name_keys("可乐")


def search_key(q: str) -> str | None:
    """The part of a search that can match pinyin keys (`Ke Le` → "kele"), or None when it cannot
    (a query in Chinese, or with punctuation, matches the name instead)."""
    key = "".join(unicodedata.normalize("NFKC", q).lower().split())
    return key if _ASCII_WORD.fullmatch(key) else None


def fill_name_keys(conn: sqlite3.Connection) -> None:
    """Write the pinyin keys of every product (the migration's data step; running it again writes the
    same values)."""
    rows = conn.execute("SELECT sku, name FROM products").fetchall()
    conn.executemany("UPDATE products SET name_pinyin = ?, name_initials = ? WHERE sku = ?",
                     [(*name_keys(name), sku) for sku, name in rows])
