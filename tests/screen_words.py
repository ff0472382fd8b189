"""What a person must never read on a dashboard page: the program's own words.

`internal_words(text, lang, data)` returns the machine words found in a page's visible text: the
vocabularies of the code (order states, print job states, event types, document kinds, scan kinds,
payment methods, role names, move reasons, device and link states, reason codes), imported from the
modules that define them so a new state is checked the day it is added; class-like names (ValueError,
KeyError...); snake_case tokens; UUIDs; ISO time stamps ('T' and 'Z' are not how a store writes a
time); "0 分钟" where "刚刚" belongs; and on a Chinese page any English phrase of the app's own texts
and any lower-case English word (a stored value no table translated: "local", "seed"...).

`data` is what the store's own people typed or the chain sent (product names, SKUs, printer names, the
store's name, user names): it is shown as it is, so it is blanked out before the scan.
"""

from __future__ import annotations

import re

from drivers.documents import KINDS as DOCUMENT_KINDS
from drivers.documents import PAYMENT_LABELS, STATE_LABELS
from edge.core.classify import KINDS as SCAN_KINDS
from edge.core.classify import REASONS as SCAN_REASONS
from edge.core.schemas import PAYMENT_METHODS
from edge.store.migrations import PRINT_JOB_STATES
from edge.store.orders import ALL_STATES as ORDER_STATES
from edge.store.users import ROLES
from protocol.events import EVENT_TYPES
from protocol.orders import PICKUP_METHODS, PRINT_RESULTS
from protocol.stock import MOVE_REASONS, RESERVATION_REASONS

VOCABULARIES: dict[str, frozenset[str]] = {
    "order state": frozenset(ORDER_STATES),
    "print job state": frozenset(PRINT_JOB_STATES) | frozenset(PRINT_RESULTS),
    "event type": EVENT_TYPES,
    "document kind": frozenset(DOCUMENT_KINDS),
    "scan kind": frozenset(SCAN_KINDS) | frozenset(SCAN_REASONS),
    "payment method": frozenset(PAYMENT_METHODS) | frozenset(PAYMENT_LABELS["zh"]),
    "pickup method": frozenset(PICKUP_METHODS),
    "role": frozenset(ROLES),
    "stock move reason": frozenset(MOVE_REASONS) | frozenset(RESERVATION_REASONS),
    "device or link state": frozenset(STATE_LABELS["zh"]),
}

# Words that are fine on any page, each with why. Anything else the patterns catch is a bug of the page.
ALLOWED = {
    "SKU": "the retail word for an article number, used as it is in Chinese stores too",
    "IT": "who to call; written this way in Chinese",
    "GS1": "the name of the barcode standard, in the scan kind 'GS1 条码'",
    "USB": "a printer's connection, as printed on the printer",
    "English": "the language switch shows the other language's own name",
    "store-edge user add": "the command IT runs to make an account, quoted in the login page's hint",
    "store-edge doctor": "the command IT runs to see why a job failed, quoted in the overview's hint",
    "config.toml": "the file IT edits, named in the hints of what is not configured",
    "[[scanners]]": "the config.toml section IT adds, quoted in the devices page's hint",
    "[[cameras]]": "the same, for cameras",
    "[cloud]": "the config.toml section of the cloud, quoted in the sync page's hint",
    "url": "the key of [cloud] IT fills in, quoted in the same hint",
}

CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception|Warning)\b")
UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
ISO_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
HEX_ID = re.compile(r"(?<![A-Za-z0-9])(?:[a-z]{1,3}-)?[0-9a-f]{16,}(?![A-Za-z0-9])")  # o-b459a43d0eda43a4...
# shift.close, not e.g.
DOTTED = re.compile(r"(?<![A-Za-z0-9_.])[a-z]{2,}(?:_[a-z]+)*(?:\.[a-z]{2,}(?:_[a-z]+)*)+(?![A-Za-z0-9_])")
SNAKE = re.compile(r"(?<![A-Za-z0-9_.-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![A-Za-z0-9_])")
ZERO_MINUTES = {"zh": re.compile(r"(?<![\d.])0 ?分钟"), "en": re.compile(r"(?<![\d.])0 min\b")}
# an ASCII word as the page shows it: letters, digits, and the dots and underscores of event types
LETTERS = re.compile(r"[A-Za-z]+")
TOKEN = re.compile(r"(?<![A-Za-z0-9_.])[A-Za-z][A-Za-z0-9]*(?:[._][A-Za-z0-9]+)*")


def english_phrases(text_table: dict[str, dict[str, str]]) -> list[str]:
    """The literal English of the app's own texts (placeholders cut out) that never occurs in Chinese."""
    chinese = " ".join(text_table["zh"].values())
    phrases = set()
    for value in text_table["en"].values():
        for part in re.split(r"\{[^}]*\}", value):
            part = part.strip(" .,:;()!?-—/·")
            if len(part) >= 4 and re.search(r"[A-Za-z]{3}", part) and part not in chinese \
                    and part not in ALLOWED:
                phrases.add(part)
    return sorted(phrases, key=len, reverse=True)


def internal_words(text: str, lang: str, data: list[str] = (), text_table: dict | None = None) -> list[str]:
    """Each machine word of `text` (a page's visible text, in `lang`) as 'what: word'; empty when clean."""
    for value in sorted({d for d in data if d}, key=len, reverse=True):
        text = text.replace(value, " ")
    for phrase in sorted(ALLOWED, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(phrase)}(?![A-Za-z0-9_])", " ", text)
    found = []
    for what, pattern in (("class name", CLASS_NAME), ("UUID", UUID), ("ISO time", ISO_TIME),
                          ("snake_case", SNAKE), ("id", HEX_ID), ("dotted code", DOTTED), ("zero minutes", ZERO_MINUTES[lang])):
        found += [f"{what}: {m.group(0)}" for m in pattern.finditer(text)]
    for token in TOKEN.findall(text):
        if lang == "zh" and re.fullmatch(r"[a-z]{3,}", token):
            found.append(f"English word: {token}")  # a stored value or a message no table translated
        for what, words in VOCABULARIES.items():
            # in English "ready" or "cash" are words; a dotted or snake_case code is not, in any language
            if token in words and (lang == "zh" or "_" in token or "." in token):
                found.append(f"{what}: {token}")
    if lang == "zh" and text_table is not None:
        # A phrase can match only if each of its runs of letters is a whole word of the text (the
        # look-arounds keep its first and last ones whole): a set look-up picks the few phrases worth a
        # regex search out of hundreds, whose patterns alone overflow re's cache of compiled patterns.
        words = set(LETTERS.findall(text))
        for phrase in english_phrases(text_table):
            if words.issuperset(LETTERS.findall(phrase)) and \
                    re.search(rf"(?<![A-Za-z]){re.escape(phrase)}(?![A-Za-z])", text):
                found.append(f"English text: {phrase}")
    return sorted(set(found))
