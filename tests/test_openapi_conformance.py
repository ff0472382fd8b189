"""Schemathesis against the real app: every operation of /api/v1/openapi.json, examples generated from
the document itself, every check (status codes, content types, response schemas, negative data
refused, ...). Bounded: a few examples per operation, so the whole run takes seconds.

The app is served on a free port by a thread of its own (schemathesis sends blocking requests).
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from edge.app import build_app
from edge.core import config as config_mod
from tests.conftest import seed, write_config
from tests.helpers_daemon import free_port

EXAMPLES = 10


class ServedApp:
    def __init__(self, config):
        self.config, self.port = config, free_port()
        self._ready, self._loop = threading.Event(), None
        self._thread = threading.Thread(target=self._run, name="served-app", daemon=True)

    def _run(self) -> None:
        async def main():
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            runner = web.AppRunner(build_app(self.config), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()
        asyncio.run(main())

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(30), "the app did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    config = config_mod.load(write_config(tmp_path_factory.mktemp("conformance")))
    seed(config.db_path)
    with ServedApp(config) as app:
        yield app


def _operations(config):
    from edge.api.openapi import document  # noqa: PLC0415

    schema = schemathesis.openapi.from_dict(document(config))
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.endswith("/ws"):  # a WebSocket upgrade is no request and answer
            yield operation


# A 400 or 422 with one of these codes refuses a request for its form: for a request the document
# calls valid, the document and the server disagree. A 422 with any other code refuses it for its
# content, which no schema can foresee (docs/api.md): an unknown SKU or barcode, an underpaid sale, a
# string of a token's form that is no token of ours (docs/tokens.md: malformed, expired, wrong_store).
FORM = {"invalid_body", "invalid_json", "invalid_query", "idempotency_key_missing", "idempotency_key_invalid",
        "unsupported_media_type"}


# A 400 with one of these codes refuses two well-formed dates that do not make a range (`to` before
# `from`, or longer than a report covers): a rule between two parameters, which JSON Schema cannot state.
RANGE = {"invalid_range", "range_too_long"}


def _refused_for_content(response) -> bool:
    if response.status_code not in (400, 422):
        return False
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return False
    return code in RANGE if response.status_code == 400 else code not in FORM


def _whole_numbers(value):
    """2.0 for an integer is valid JSON Schema but refused by the API on purpose (docs/api.md: bodies
    are validated strictly, "qty": 2.0 is an error), a difference JSON Schema cannot express: send 2."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_does_what_its_document_says(served, mode):
    base_url = f"http://127.0.0.1:{served.port}"
    failures = []
    for operation in _operations(served.config):
        @given(operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            if case.query and "wait" in case.query:
                case.query["wait"] = 0  # a long poll: what it waits for is tested in tests/test_scans_api.py
            if case.headers and "Idempotency-Key" in case.headers:
                # the document asks for a key unique per operation; a generator reuses its examples' keys
                case.headers["Idempotency-Key"] = str(uuid.uuid4())
            case.body = _whole_numbers(case.body)
            response = case.call(base_url=base_url, timeout=10)
            excluded = []
            if mode is GenerationMode.POSITIVE and _refused_for_content(response):
                excluded = [positive_data_acceptance]
            case.validate_response(response, excluded_checks=excluded)

        try:
            check()
        except Unsatisfiable:  # nothing of this operation can be made invalid (e.g. one free-text path part)
            continue
        except BaseException as exc:  # noqa: BLE001 (collected: one run names every operation that fails)
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {exc}"[:1500])
    assert not failures, "\n\n".join(failures)
