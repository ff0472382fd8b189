-- Members' points and stored-value ledgers, holds and programmes (issue 12 parts 3-5): the PostgreSQL twin of
-- hub/schema.py's MEMBER_LEDGERS migration, with the same tables, columns and meaning (read the comments there).
-- Times are TEXT (ISO 8601, as the SQLite schema keeps them, so the same SQL compares them); booleans INTEGER 0/1.

CREATE TABLE member_points_ledger (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id      TEXT NOT NULL REFERENCES members(member_id),
    activity_id    TEXT NOT NULL UNIQUE,
    store_id       TEXT REFERENCES stores(store_id),
    kind           TEXT NOT NULL CHECK (kind IN ('opening', 'sale', 'return', 'adjust')),
    delta          BIGINT NOT NULL,
    earned         BIGINT NOT NULL DEFAULT 0,
    spent          BIGINT NOT NULL DEFAULT 0,
    balance_after  BIGINT NOT NULL,
    hold_id        TEXT,
    offline        INTEGER NOT NULL DEFAULT 0 CHECK (offline IN (0, 1)),
    flags          TEXT NOT NULL DEFAULT '[]',
    reason         TEXT,
    at             TEXT NOT NULL,
    event_id       TEXT,
    received_at    TEXT NOT NULL
);
CREATE INDEX member_points_ledger_member ON member_points_ledger(member_id, id);
CREATE INDEX member_points_ledger_flagged ON member_points_ledger(id) WHERE flags <> '[]';

CREATE TABLE member_value_ledger (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id      TEXT NOT NULL REFERENCES members(member_id),
    activity_id    TEXT NOT NULL UNIQUE,
    store_id       TEXT REFERENCES stores(store_id),
    kind           TEXT NOT NULL CHECK (kind IN ('opening', 'sale', 'return', 'topup')),
    delta          BIGINT NOT NULL,
    balance_after  BIGINT NOT NULL,
    hold_id        TEXT,
    offline        INTEGER NOT NULL DEFAULT 0 CHECK (offline IN (0, 1)),
    flags          TEXT NOT NULL DEFAULT '[]',
    reason         TEXT,
    at             TEXT NOT NULL,
    event_id       TEXT,
    received_at    TEXT NOT NULL
);
CREATE INDEX member_value_ledger_member ON member_value_ledger(member_id, id);
CREATE INDEX member_value_ledger_flagged ON member_value_ledger(id) WHERE flags <> '[]';

CREATE TABLE member_holds (
    hold_id           TEXT PRIMARY KEY,
    store_id          TEXT NOT NULL REFERENCES stores(store_id),
    member_id         TEXT NOT NULL REFERENCES members(member_id),
    points            BIGINT NOT NULL CHECK (points >= 0),
    amount_fen        BIGINT NOT NULL CHECK (amount_fen >= 0),
    points_left       BIGINT NOT NULL,
    balance_fen_left  BIGINT NOT NULL,
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    released_at       TEXT,
    captured_at       TEXT,
    activity_id       TEXT
);
CREATE INDEX member_holds_open ON member_holds(member_id, expires_at) WHERE released_at IS NULL AND
    captured_at IS NULL;

CREATE TABLE member_programs (
    version       BIGINT PRIMARY KEY,
    program       TEXT NOT NULL,
    change_id     TEXT NOT NULL,
    published_at  TEXT NOT NULL
);

INSERT INTO member_points_ledger (member_id, activity_id, kind, delta, balance_after, at, received_at)
    SELECT member_id, 'opening:' || member_id, 'opening', points, points, created_at, created_at FROM members
    WHERE points <> 0;
INSERT INTO member_value_ledger (member_id, activity_id, kind, delta, balance_after, at, received_at)
    SELECT member_id, 'opening:' || member_id, 'opening', balance_fen, balance_fen, created_at, created_at
    FROM members WHERE balance_fen <> 0;
