"""Migrations of members at the till (issue 12), appended to edge/store/migrations.py's list after the
store's day (schema_day.py). Append new ones at the end; never edit one that has shipped.
"""

MEMBER_MIGRATIONS: list[tuple[str, str]] = []

# A member code is good for its 30-second step and one step either side (docs/members.md): each (member,
# step) is accepted once, so a code photographed over the customer's shoulder and shown again is refused.
# Only the member id and the step are kept: no name, no phone, never the code. Steps older than the
# window are deleted as new codes arrive (edge/store/members.py), so the table holds minutes, not years.
MEMBER_CODE_USES = """
CREATE TABLE member_code_uses (
    member_id   TEXT NOT NULL,
    step        INTEGER NOT NULL,          -- RFC 6238's T: floor(unix / 30)
    used_at     TEXT NOT NULL,
    PRIMARY KEY (member_id, step)
) WITHOUT ROWID;
CREATE INDEX member_code_uses_step ON member_code_uses(step);
"""

MEMBER_MIGRATIONS.append(("members: each member code's (member, time step) accepted once", MEMBER_CODE_USES))
