"""The running test's hub database URL (None: SQLite), set by conftest's `hub_database` fixture.

A module of its own, not a name in conftest.py: pytest imports conftest.py as the module `conftest`, and
a test module's `from tests.conftest import ...` imports a second copy of it, whose dict the fixture never
fills (every "postgresql" hub test ran on SQLite that way until this module)."""

HUB_DB: dict[str, str | None] = {"url": None}
