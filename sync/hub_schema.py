"""Schema of the reference cloud hub's database (DIR/hub.db), as versioned migrations.

Used with edge.db.Store(path, migrations=HUB_MIGRATIONS): PRAGMA user_version counts the applied
ones. Append new migrations at the end; never edit one that has shipped.
"""

INITIAL = """
-- Key/value settings of the hub itself: 'epoch'.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- The stores the hub serves. Only a SHA-256 of each store's token is kept. next_seq is the
-- sequence number the hub expects next from the store (docs/sync-protocol.md 2.2).
CREATE TABLE stores (
    store_id        TEXT PRIMARY KEY CHECK (length(store_id) BETWEEN 1 AND 64),
    name            TEXT NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    next_seq        INTEGER NOT NULL DEFAULT 1 CHECK (next_seq >= 1),
    last_upload_at  TEXT,
    created_at      TEXT NOT NULL,
    token_set_at    TEXT NOT NULL
);

-- The chain catalog. Every SKU a store's moves name must be here.
CREATE TABLE products (
    sku         TEXT PRIMARY KEY CHECK (length(sku) BETWEEN 1 AND 64),
    name        TEXT NOT NULL,
    price_fen   INTEGER NOT NULL CHECK (price_fen >= 0),
    unit        TEXT NOT NULL,
    category    TEXT,
    low_stock   INTEGER NOT NULL DEFAULT 0,
    barcodes    TEXT NOT NULL DEFAULT '[]',
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    updated_at  TEXT NOT NULL
);
CREATE TABLE barcodes (
    code  TEXT PRIMARY KEY,
    sku   TEXT NOT NULL REFERENCES products(sku)
);
CREATE INDEX barcodes_sku ON barcodes(sku);

-- Every event a store uploaded that took a sequence number, applied or rejected. The same event id
-- may appear more than once: rejected, then resent at a new seq and validated again.
CREATE TABLE events (
    event_row    INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id     TEXT NOT NULL REFERENCES stores(store_id),
    seq          INTEGER NOT NULL,
    event_id     TEXT,                 -- NULL when the envelope had no usable id
    type         TEXT,
    created_at   TEXT,
    payload      TEXT NOT NULL,        -- JSON, as sent
    digest       TEXT NOT NULL,        -- SHA-256 of the whole envelope: a resent id-less event is recognised
    status       TEXT NOT NULL CHECK (status IN ('applied', 'rejected')),
    reason       TEXT,
    received_at  TEXT NOT NULL,
    UNIQUE (store_id, seq)
);
CREATE INDEX events_id ON events(store_id, event_id);
CREATE INDEX events_status ON events(store_id, status, seq);

-- The hub's copy of each store's balances: the sum of the moves of its applied events.
CREATE TABLE balances (
    store_id    TEXT NOT NULL REFERENCES stores(store_id),
    sku         TEXT NOT NULL,
    on_hand     INTEGER NOT NULL DEFAULT 0,
    reserved    INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (store_id, sku)
) WITHOUT ROWID;

-- The download feed. store_id NULL: a change for every store.
CREATE TABLE changes (
    cursor      INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    store_id    TEXT REFERENCES stores(store_id),
    type        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX changes_store ON changes(store_id, cursor);

-- Online orders the hub created. Pending (counted against online availability) while state is
-- 'created' and the store has not acknowledged it (order.received).
CREATE TABLE orders (
    order_id            TEXT PRIMARY KEY,
    store_id            TEXT NOT NULL REFERENCES stores(store_id),
    number              TEXT NOT NULL,
    day                 TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('pickup', 'delivery')),
    state               TEXT NOT NULL CHECK (state IN ('created', 'accepted', 'ready', 'picked_up',
                                                       'cancelled', 'refunded', 'rejected')),
    total_fen           INTEGER NOT NULL CHECK (total_fen >= 0),
    pickup_code_sha256  TEXT NOT NULL,
    pickup_after        TEXT,
    customer_note       TEXT,
    change_id           TEXT NOT NULL,
    received_at         TEXT,
    short               TEXT,
    conflict            TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (store_id, day, number)
);
CREATE INDEX orders_store ON orders(store_id, state);
CREATE INDEX orders_change ON orders(change_id);

CREATE TABLE order_lines (
    order_id   TEXT NOT NULL REFERENCES orders(order_id),
    line_no    INTEGER NOT NULL,
    sku        TEXT NOT NULL,
    name       TEXT NOT NULL,
    qty        INTEGER NOT NULL CHECK (qty > 0),
    price_fen  INTEGER NOT NULL CHECK (price_fen >= 0),
    PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;
"""

# print.result events (docs/sync-protocol.md 2.4): the last result the store reported for each print job
# kind of an online order (a reprint's result replaces the one before it). seq is the store's seq of
# the event that set the row: the highest across kinds is the order's latest print result.
ORDER_PRINTS = """
CREATE TABLE order_prints (
    order_id     TEXT NOT NULL REFERENCES orders(order_id),
    kind         TEXT NOT NULL CHECK (kind IN ('order_ticket', 'pickup_slip')),
    job_key      TEXT NOT NULL,
    result       TEXT NOT NULL CHECK (result IN ('printed', 'uncertain', 'expired', 'failed',
                                                 'confirmed_printed', 'reprinted')),
    at           TEXT NOT NULL,        -- when the job reached this result, at the store
    printer      TEXT NOT NULL,
    attempts     INTEGER NOT NULL CHECK (attempts >= 0),
    error        TEXT,
    reprint      INTEGER NOT NULL CHECK (reprint IN (0, 1)),
    seq          INTEGER NOT NULL,
    event_id     TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    PRIMARY KEY (order_id, kind)
) WITHOUT ROWID;

-- the admin order listing pages in (created_at, order_id) order
CREATE INDEX orders_created ON orders(created_at, order_id);
"""

HUB_MIGRATIONS: list[tuple[str, str]] = [
    ("hub: stores, catalog, events, balances, changes, orders", INITIAL),
    ("hub: print results of online orders", ORDER_PRINTS),
]
