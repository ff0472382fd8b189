"""The fault-injecting proxy (sync/faultproxy.py), in-process: a tiny upstream, the proxy, a client."""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from hub.faultproxy import PROXY, RuleError, add_arguments, build_proxy_app, parse_faults

ROOT = Path(__file__).resolve().parent.parent
DISCONNECTED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
GONE = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


class Upstream:
    """Counts requests; /echo echoes the request, /stream answers in chunks, /ws is a WebSocket echo."""

    def __init__(self):
        self.hits: list[tuple[str, str]] = []
        self.ws_close_codes: list[int | None] = []
        self.changed = asyncio.Condition()

    async def note(self, fn) -> None:
        async with self.changed:
            fn()
            self.changed.notify_all()

    async def wait_for(self, predicate, timeout: float = 2.0) -> None:
        async def wait():
            async with self.changed:
                await self.changed.wait_for(predicate)
        await asyncio.wait_for(wait(), timeout)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/stream", self.stream)
        app.router.add_get("/ws", self.ws)
        return app

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        await self.note(lambda: self.hits.append((request.method, request.path_qs)))
        status = int(request.headers.get("X-Want-Status", "200"))
        resp = web.json_response({"method": request.method, "raw_path": request.raw_path,
                                  "query": request.query_string, "body": body.decode(),
                                  "headers": {k.lower(): v for k, v in request.headers.items()}},
                                 status=status, headers={"X-Upstream": "yes"})
        resp.headers.add("Set-Cookie", "a=1")
        resp.headers.add("Set-Cookie", "b=2")
        return resp

    async def stream(self, request: web.Request) -> web.StreamResponse:
        await self.note(lambda: self.hits.append((request.method, request.path_qs)))
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        for i in range(3):
            await resp.write(f"chunk{i};".encode())
        await resp.write_eof()
        return resp

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        await self.note(lambda: self.hits.append((request.method, request.path_qs)))
        ws = web.WebSocketResponse(protocols=("hints.v1",))
        await ws.prepare(request)
        await ws.send_str('{"type": "hello"}')
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                if msg.data == "close-me":
                    await ws.close(code=4001, message=b"bye")
                else:
                    await ws.send_str("echo:" + msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        await self.note(lambda: self.ws_close_codes.append(ws.close_code))
        return ws


@pytest.fixture
async def upstream():
    up = Upstream()
    server = TestServer(up.app())
    await server.start_server()
    up.url = str(server.make_url("/"))
    yield up
    await server.close()


@pytest.fixture
async def client(upstream):
    client = TestClient(TestServer(build_proxy_app(upstream.url, seed=0)))
    await client.start_server()
    yield client
    await client.close()


async def put_rules(client, rules, seed=None) -> dict:
    body = {"rules": rules} if seed is None else {"seed": seed, "rules": rules}
    resp = await client.put("/_proxy/faults", json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def stats(client) -> dict:
    resp = await client.get("/_proxy/stats")
    return await resp.json()


# -- forwarding -----------------------------------------------------------------------------------

async def test_forwards_get_and_post_with_query_headers_body_and_status(client, upstream):
    resp = await client.get("/echo?a=1&b=x%20y&a=2", headers={"Authorization": "Bearer t0k",
                                                              "X-Trace": "abc", "Keep-Alive": "timeout=5"})
    assert resp.status == 200
    assert resp.headers["X-Upstream"] == "yes"
    assert resp.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    seen = await resp.json()
    assert seen["method"] == "GET" and seen["raw_path"] == "/echo?a=1&b=x%20y&a=2"
    assert seen["headers"]["authorization"] == "Bearer t0k" and seen["headers"]["x-trace"] == "abc"
    assert "keep-alive" not in seen["headers"]  # hop-by-hop
    assert seen["headers"]["host"] == upstream.url.split("//")[1].rstrip("/")

    body = '{"protocol": 1, "events": ["事件"]}'
    resp = await client.post("/echo?x=1", data=body.encode(), headers={
        "Content-Type": "application/json", "Idempotency-Key": "s:1-2", "X-Want-Status": "409"})
    assert resp.status == 409
    seen = await resp.json()
    assert (seen["method"], seen["query"], seen["body"]) == ("POST", "x=1", body)
    assert seen["headers"]["idempotency-key"] == "s:1-2"
    assert seen["headers"]["content-type"] == "application/json"

    resp = await client.get("/stream")
    assert (resp.status, await resp.text()) == (200, "chunk0;chunk1;chunk2;")
    resp = await client.delete("/nowhere")
    assert resp.status == 404  # the upstream's own 404

    assert upstream.hits == [("GET", "/echo?a=1&b=x%20y&a=2"), ("POST", "/echo?x=1"), ("GET", "/stream")]
    counted = await stats(client)
    assert counted["forwarded"] == 4 and counted["by_path"]["/echo"] == {"forwarded": 2}
    assert set(counted["faults"].values()) == {0}


async def test_websocket_passes_through_both_ways(client, upstream):
    async with client.ws_connect("/ws", protocols=("hints.v1",)) as ws:
        assert ws.protocol == "hints.v1"
        assert (await ws.receive_str(timeout=2)) == '{"type": "hello"}'  # upstream -> client unprompted
        await ws.send_str("ping 你好")
        assert (await ws.receive_str(timeout=2)) == "echo:ping 你好"
        await ws.send_bytes(b"\x00\x01\x02")
        assert (await ws.receive_bytes(timeout=2)) == b"\x02\x01\x00"
        await ws.close(code=4000, message=b"edge stopping")
    await upstream.wait_for(lambda: upstream.ws_close_codes == [4000])  # the client's close code

    async with client.ws_connect("/ws") as ws:
        await ws.receive_str(timeout=2)
        await ws.send_str("close-me")
        msg = await ws.receive(timeout=2)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4001, "bye")  # the upstream's close
    assert (await stats(client))["open_websockets"] == 0


async def test_upstream_unreachable_is_502():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = TestClient(TestServer(build_proxy_app(f"http://127.0.0.1:{port}")))
    await client.start_server()
    try:
        resp = await client.post("/sync/v1/x", json={})
        assert resp.status == 502 and (await resp.json())["error"] == "upstream_unreachable"
        assert (await stats(client))["upstream_errors"] == 1
    finally:
        await client.close()


# -- faults ---------------------------------------------------------------------------------------

async def test_drop_disconnects_without_reaching_upstream_and_count_exhausts(client, upstream):
    await put_rules(client, [{"match": "/echo", "method": "POST", "fault": "drop", "count": 1}])
    with pytest.raises(DISCONNECTED):
        await client.post("/echo", json={"n": 1})
    assert upstream.hits == []
    resp = await client.post("/echo", json={"n": 2})  # the rule is spent
    assert resp.status == 200
    assert upstream.hits == [("POST", "/echo")]
    counted = await stats(client)
    assert counted["faults"]["drop"] == 1 and counted["by_path"]["/echo"] == {"drop": 1, "forwarded": 1}
    assert counted["rules"][0]["applied"] == 1 and counted["rules"][0]["remaining"] == 0


async def test_error_after_upstream_commits_then_answers_500(client, upstream):
    await put_rules(client, [{"match": "/echo", "fault": "error_after_upstream"}])
    resp = await client.post("/echo", json={"events": []})
    assert resp.status == 500 and await resp.json() == {"error": "injected"}
    assert upstream.hits == [("POST", "/echo")]
    counted = await stats(client)
    assert counted["faults"]["error_after_upstream"] == 1 and counted["forwarded"] == 1


async def test_stall_times_the_client_out_and_still_reaches_upstream(client, upstream):
    await put_rules(client, [{"match": "/echo", "fault": "stall", "seconds": 0.3}])
    with pytest.raises(asyncio.TimeoutError):
        await client.post("/echo", data=b"late", timeout=aiohttp.ClientTimeout(total=0.05))
    assert upstream.hits == []
    await upstream.wait_for(lambda: len(upstream.hits) == 1)  # the hub still commits
    # a patient client gets the upstream's answer after the stall
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await client.post("/echo", data=b"patient", timeout=aiohttp.ClientTimeout(total=2))
    assert resp.status == 200 and (await resp.json())["body"] == "patient"
    assert loop.time() - started >= 0.29
    assert (await stats(client))["faults"]["stall"] == 2


async def test_respond_429_has_retry_after_and_skips_upstream(client, upstream):
    await put_rules(client, [{"match": "/echo", "method": "post", "fault": "respond", "status": 429},
                             {"match": "/echo", "fault": "respond", "status": 422}])
    resp = await client.post("/echo", json={})
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    assert await resp.json() == {"error": "injected"}
    resp = await client.get("/echo")  # the first rule is for POST only
    assert resp.status == 422 and "Retry-After" not in resp.headers
    assert upstream.hits == []
    counted = await stats(client)
    assert counted["faults"]["respond"] == 2 and counted["forwarded"] == 0


async def test_count_exhausts_a_rule(client, upstream):
    await put_rules(client, [{"match": "/", "fault": "respond", "status": 503, "count": 2, "retry_after": 7}])
    statuses = []
    for _ in range(4):
        resp = await client.get("/echo")
        statuses.append(resp.status)
        if resp.status == 503:
            assert resp.headers["Retry-After"] == "7"
    assert statuses == [503, 503, 200, 200]
    rules = (await (await client.get("/_proxy/faults")).json())["rules"]
    assert rules[0]["applied"] == 2 and rules[0]["remaining"] == 0


async def test_seeded_probabilities_give_the_same_sequence(client, upstream):
    rules = [{"match": "/echo", "fault": "respond", "status": 503, "probability": 0.5}]

    async def run() -> list[int]:
        await put_rules(client, rules, seed=7)
        return [(await client.get("/echo")).status for _ in range(16)]

    first, second = await run(), await run()
    assert first == second
    draws = random.Random(7)  # one draw per matching rule per request, in order
    assert first == [503 if draws.random() < 0.5 else 200 for _ in range(16)]
    assert {200, 503} <= set(first)


async def test_outage_closes_open_websocket_and_refuses_everything(client, upstream):
    ws = await client.ws_connect("/ws")
    assert (await ws.receive_str(timeout=2)) == '{"type": "hello"}'
    resp = await client.put("/_proxy/down")
    assert (await resp.json()) == {"down": True}
    msg = await ws.receive(timeout=2)
    assert msg.type in GONE
    await ws.close()
    await upstream.wait_for(lambda: upstream.ws_close_codes == [1001])
    hits = len(upstream.hits)
    with pytest.raises(DISCONNECTED):
        await client.get("/echo")
    with pytest.raises(DISCONNECTED):
        await client.ws_connect("/ws")
    assert len(upstream.hits) == hits
    # the torn-down socket, the GET, the handshake (TestClient does not resend a dropped GET)
    assert (await stats(client))["by_path"] == {"/ws": {"forwarded": 1, "down": 2}, "/echo": {"down": 1}}
    await client.delete("/_proxy/down")
    assert (await client.get("/echo")).status == 200


async def test_down_rule_tears_down_open_websockets(client, upstream):
    ws = await client.ws_connect("/ws")
    await ws.receive_str(timeout=2)
    await put_rules(client, [{"match": "/ws", "fault": "down"}])  # installed: the link under /ws dies
    assert (await ws.receive(timeout=2)).type in GONE
    await ws.close()
    with pytest.raises(DISCONNECTED):
        await client.ws_connect("/ws")
    assert (await client.get("/echo")).status == 200  # other paths are fine

    # a down rule for POSTs (not applied at install) kills the sockets under its match when it hits
    await put_rules(client, [{"match": "/", "method": "POST", "fault": "down", "count": 1}])
    ws = await client.ws_connect("/ws")
    await ws.receive_str(timeout=2)
    with pytest.raises(DISCONNECTED):
        await client.post("/echo", json={})
    assert (await ws.receive(timeout=2)).type in GONE
    await ws.close()


# -- control API ----------------------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ({"rules": "drop"}, "rules: required"),
    ({}, "rules: required"),
    ([], "body: must be a JSON object"),
    ({"rules": [], "speed": 1}, "unknown field(s) speed"),
    ({"seed": "x", "rules": []}, "seed:"),
    ({"rules": ["drop"]}, "rules[0]: must be an object"),
    ({"rules": [{"fault": "drop"}]}, "rules[0].match"),
    ({"rules": [{"match": "sync", "fault": "drop"}]}, "rules[0].match"),
    ({"rules": [{"match": "/", "fault": "explode"}]}, "rules[0].fault: must be one of"),
    ({"rules": [{"match": "/", "fault": "drop", "probabilty": 0.5}]}, "unknown field(s) probabilty"),
    ({"rules": [{"match": "/", "fault": "drop", "probability": 1.5}]}, "rules[0].probability"),
    ({"rules": [{"match": "/", "fault": "drop", "count": 0}]}, "rules[0].count"),
    ({"rules": [{"match": "/", "fault": "drop", "method": "GET /"}]}, "rules[0].method"),
    ({"rules": [{"match": "/", "fault": "drop"}, {"match": "/", "fault": "stall"}]}, "rules[1].seconds: required"),
    ({"rules": [{"match": "/", "fault": "drop", "seconds": 1}]}, "rules[0].seconds: only applies"),
    ({"rules": [{"match": "/", "fault": "respond"}]}, "rules[0].status: required"),
    ({"rules": [{"match": "/", "fault": "respond", "status": 99}]}, "rules[0].status"),
    ({"rules": [{"match": "/", "fault": "drop", "status": 500}]}, "rules[0].status: only applies"),
    ({"rules": [{"match": "/", "fault": "respond", "status": 429, "retry_after": -1}]}, "retry_after"),
])
async def test_bad_rules_are_refused_with_a_message(client, body, message):
    await put_rules(client, [{"match": "/", "fault": "respond", "status": 418}])
    resp = await client.put("/_proxy/faults", json=body)
    assert resp.status == 400
    answer = await resp.json()
    assert answer["error"] == "invalid_rules" and message in answer["message"], answer
    assert len((await (await client.get("/_proxy/faults")).json())["rules"]) == 1  # rules unchanged


async def test_control_api_is_never_forwarded(client, upstream):
    resp = await client.put("/_proxy/faults", data=b"{not json")
    assert resp.status == 400 and "not JSON" in (await resp.json())["message"]
    assert (await client.get("/_proxy/nothing")).status == 404
    resp = await client.post("/_proxy/faults")
    assert resp.status == 405 and "PUT" in resp.headers["Allow"]
    await put_rules(client, [{"match": "/", "fault": "drop"}])  # "/" matches everything but /_proxy/
    assert (await stats(client))["faults"]["drop"] == 0
    resp = await client.delete("/_proxy/faults")
    assert (await resp.json())["rules"] == []
    assert upstream.hits == []
    with pytest.raises(RuleError):
        parse_faults({"rules": [{"match": "/", "fault": "stall", "seconds": 0}]})
    assert isinstance(client.server.app[PROXY].stats()["faults"], dict)


# -- command line ---------------------------------------------------------------------------------

def test_arguments_are_checked():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--listen", "127.0.0.1:8766", "--upstream", "http://127.0.0.1:8765", "--seed", "3"])
    assert (args.listen, args.upstream, args.seed) == ("127.0.0.1:8766", "http://127.0.0.1:8765", 3)
    for bad in (["--listen", "8766", "--upstream", "http://h:1"], ["--listen", "h:1", "--upstream", "ftp://h"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


async def test_runs_as_a_process_and_stops_on_sigterm(upstream):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.faultproxy", "--listen", "127.0.0.1:0", "--upstream", upstream.url,
        "--log-level", "debug", cwd=ROOT, stderr=asyncio.subprocess.PIPE)
    try:
        lines = []
        while not any("msg=listening" in line for line in lines):
            line = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
            assert line, "".join(lines)
            lines.append(line)
        base = re.search(r"address=(http://\S+/)", lines[-1]).group(1)
        async with aiohttp.ClientSession(base) as session:
            async with session.get("echo?q=1") as resp:
                assert resp.status == 200
            async with session.put("_proxy/faults", json={"rules": [
                    {"match": "/echo", "fault": "respond", "status": 503}]}) as resp:
                assert resp.status == 200
            async with session.get("echo") as resp:
                assert resp.status == 503
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        rest = (await proc.stderr.read()).decode()
        assert "msg=\"fault applied\" fault=respond method=GET path=/echo" in rest
        assert re.search(r"msg=stopped forwarded=1 .*respond=1", rest), rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
