"""Migrations of the store's day (issue 14), appended to edge/store/migrations.py's list in this order.

Append new ones at the end; never edit one that has shipped.
"""

DAY_MIGRATIONS: list[tuple[str, str]] = []

# 交班 (issue 14): a cashier's shift at a till. Sales, returns and hand-overs carry the shift open at their
# till (or, on the dashboard, for the person) when they are written: decided in their own transaction on
# the one writer, so a close counts exactly what its shift holds, with no time-window race and no trust
# in the clock. A sale at a till with no open shift has none, and the 日结 shows it as outside any shift.
SHIFTS = """
CREATE TABLE shifts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    number          INTEGER NOT NULL UNIQUE,
    till            TEXT NOT NULL,                 -- the till's API token name, or 'local'
    cashier         TEXT NOT NULL,                 -- as shown and printed
    user_name       TEXT,                          -- the dashboard login that opened it, if one did
    business_date   TEXT NOT NULL,
    opened_at       TEXT NOT NULL,
    float_fen       INTEGER NOT NULL CHECK (float_fen >= 0),   -- 备用金
    closed_at       TEXT,
    closed_by       TEXT,
    counted_fen     INTEGER CHECK (counted_fen >= 0),
    expected_fen    INTEGER,
    difference_fen  INTEGER,                       -- counted - expected, kept as it was at the close
    note            TEXT
);
CREATE UNIQUE INDEX shifts_open_till ON shifts(till) WHERE closed_at IS NULL;
CREATE UNIQUE INDEX shifts_open_user ON shifts(user_name) WHERE closed_at IS NULL;
CREATE INDEX shifts_day ON shifts(business_date);
ALTER TABLE sales ADD COLUMN shift_id INTEGER REFERENCES shifts(id);
ALTER TABLE returns ADD COLUMN shift_id INTEGER REFERENCES shifts(id);
ALTER TABLE pickups ADD COLUMN shift_id INTEGER REFERENCES shifts(id);
CREATE INDEX sales_shift ON sales(shift_id) WHERE shift_id IS NOT NULL;
CREATE INDEX returns_shift ON returns(shift_id) WHERE shift_id IS NOT NULL;
CREATE INDEX pickups_shift ON pickups(shift_id) WHERE shift_id IS NOT NULL;
"""

DAY_MIGRATIONS.append(("shifts: 交班 at a till, and the shift of each sale, return and hand-over", SHIFTS))

# The cashier screen:
# An order is found by the last four digits of its customer's phone (all the store keeps of the
# number: enough to tell orders apart at the counter, nothing to call or leak). A hand-over without the
# code (the customer lost it) is made by a manager and says why: `manual_reason`. Its method stays
# 'code' (no token was verified), as on the wire, where an older cloud knows only token and code.
CASHIER = """
ALTER TABLE orders ADD COLUMN customer_phone_last4 TEXT CHECK (customer_phone_last4 GLOB '[0-9][0-9][0-9][0-9]');
CREATE INDEX orders_phone_last4 ON orders(customer_phone_last4) WHERE customer_phone_last4 IS NOT NULL;
CREATE INDEX orders_number ON orders(number COLLATE NOCASE);
ALTER TABLE pickups ADD COLUMN manual_reason TEXT CHECK (manual_reason IS NULL OR length(manual_reason) BETWEEN 1 AND 500);
"""

DAY_MIGRATIONS.append(("cashier: customers' phone last four digits, hand-overs without the code", CASHIER))

# Stock work: shelves, count sheets and purchase suggestions.
# products.shelf: where the product stands in this store (货架), set by the catalog import; the
# chain's cloud never sends it (a shelf is one store's, not the chain's).
# A count sheet (盘点单) lists the products of a category and/or a shelf at a moment, for a blind
# count (no expected quantity on it); entering its counts records one count document. category and
# shelf: NULL = any, '' = the products without one. last_move_id: the newest move when the sheet
# was made, so the entry form can point at products that moved since.
# stock_moves_demand: purchase suggestions sum the last weeks' sales by SKU; without it they read
# the whole ledger (edge/store/purchase.py).
STOCK_WORK = """
ALTER TABLE products ADD COLUMN shelf TEXT;
CREATE TABLE count_sheets (
    number        INTEGER PRIMARY KEY AUTOINCREMENT,     -- 盘点单号: what staff see and write on it
    category      TEXT,
    shelf         TEXT,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_move_id  INTEGER NOT NULL,
    document_id   TEXT UNIQUE REFERENCES stock_documents(id),   -- the count, once entered
    counted_at    TEXT,
    counted_by    TEXT
);
CREATE TABLE count_sheet_lines (
    sheet_number  INTEGER NOT NULL REFERENCES count_sheets(number),
    line_no       INTEGER NOT NULL,
    sku           TEXT NOT NULL REFERENCES products(sku),
    PRIMARY KEY (sheet_number, line_no)
);
CREATE INDEX stock_moves_demand ON stock_moves(created_at, sku, qty, reason) WHERE reason IN ('sale', 'pickup', 'return');
"""

DAY_MIGRATIONS.append(("stock work: shelves, count sheets, and the sales index of purchase suggestions", STOCK_WORK))
