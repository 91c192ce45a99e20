"""The proxy's transport under test: a real gatekeeper.proxy.server.Proxy on a unix
socket in front of a fake engine (an h11 server on another unix socket), both on one
event loop in a background thread. The decision is a stand-in (STAND_IN_ALLOWED):
the transport's tests are about framing, relay and refusals, not about the policy."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import grp
import http.client
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import h11

from gatekeeper.proxy.client_stream import ClientStream
from gatekeeper.proxy.contract import ApiRequest, ApiVerdict, EngineQueries
from gatekeeper.proxy.server import Proxy, listening_socket, new_event_loop, serve_clients
from gatekeeper.proxy.settings import load_state

# The stand-in decision: (method, path) allowed; everything else denied.
STAND_IN_ALLOWED = {
    ("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/version"), ("GET", "/containers/json"),
    ("GET", "/stream"),
    ("GET", "/big"), ("POST", "/echo"), ("GET", "/echo"), ("POST", "/build"),
    ("POST", "/containers/c1/attach"), ("POST", "/containers/c2/attach"), ("GET", "/containers/c1/json"),
    ("GET", "/close-delimited"), ("GET", "/cut-chunked"),
}  # fmt: skip


# Answers written as raw bytes, after which the fake engine hangs up.
RAW_THEN_HANG_UP = {
    "/close-delimited": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    "/containers/broken/json": b"garbage\r\n\r\n",  # not HTTP: no answer
    # a chunked head, then nothing: no body, no last chunk (its last header value ends in 0)
    "/cut-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Api: 1.40\r\n\r\n",
}


def stand_in_decide(request: ApiRequest, policy: object, engine: EngineQueries) -> ApiVerdict:
    endpoint = f"{request.method} {request.path}"
    if request.path in ("/containers/c1/top", "/containers/c1/changes"):  # decisions that ask the engine
        try:
            status, value = engine.get_json("/containers/c1/json")
            if request.path == "/containers/c1/changes":  # a second, dependent question
                status, value = engine.get_json(f"/containers/{request.query.get('then', ['c1'])[0]}/json")
        except Exception as error:  # noqa: BLE001 - as the real decision: no answer, denied
            return ApiVerdict(False, "denied", f"no answer: {type(error).__name__}", endpoint)
        owned = status == 200 and isinstance(value, dict) and value.get("Id") == "c1"
        where = threading.current_thread().name
        return ApiVerdict(owned, "allowed" if owned else "denied", f"asked the engine in {where}", endpoint)
    if request.path == "/containers/c1/export":  # a decision that asks about a host path
        where = threading.current_thread().name
        return ApiVerdict(True, "allowed", f"{engine.realpath('/')} resolved in {where}", endpoint)
    wanted = dict(request.headers).get("x-test-answered-by")
    if wanted:
        return answered_by_its_question(request, engine, endpoint, wanted)
    if (request.method, request.path) in STAND_IN_ALLOWED:
        response = "redact-test" if request.path == "/containers/c1/json" else None
        return ApiVerdict(True, "allowed", "stand-in", endpoint, response=response)
    return ApiVerdict(False, "denied", f"{request.method} {request.path} is not allowed here", endpoint)


def answered_by_its_question(request: ApiRequest, engine: EngineQueries, endpoint: str,
                             wanted: str) -> ApiVerdict:
    """A decision that asks the engine the client's own GET and names a question as the answer
    (as vet_inspect does): `wanted` "self" names that one, anything else a target never asked."""
    with contextlib.suppress(Exception):  # (the fake's 404 has no JSON: still allowed, then forwarded)
        engine.get_json(request.target)
    verdict = ApiVerdict(True, "allowed", "stand-in", endpoint, response="redact-test")
    verdict.answered_by = request.target if wanted == "self" else wanted
    return verdict


def stand_in_transform(name: str, status: int, body: bytes, request: ApiRequest) -> bytes:
    value = json.loads(body)
    value["Secret"] = "<redacted>"
    return json.dumps(value).encode()


class FakeEngine:
    """An engine that records what reaches it and answers a few paths in the ways the real
    one does (Content-Length, chunked, a stream held open, a 101 upgrade)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self.raw = bytearray()
        self.release = asyncio.Event()  # lets /stream send its second half
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        try:
            await self.serve(conn, reader, writer)
        except (ConnectionError, h11.ProtocolError):
            pass
        finally:
            writer.close()

    async def serve(self, conn: h11.Connection, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        while True:
            request, body = await self.read_request(conn, reader)
            if request is None:
                return
            headers = {k.decode(): v.decode() for k, v in request.headers}
            target = request.target.decode()
            self.received.append((request.method.decode(), target, headers, body))
            path = target.partition("?")[0]
            if path.startswith("/v1."):
                path = "/" + path.split("/", 2)[2]
            if await self.answer(conn, reader, writer, path, target, headers, body):
                return
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    async def read_request(self, conn, reader):  # type: ignore[no-untyped-def]
        request, parts = None, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(1 << 16)
                self.raw += data
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return request, b"".join(parts)
            else:
                return None, b""

    async def answer(self, conn, reader, writer, path, target, headers, body) -> bool:  # type: ignore[no-untyped-def]
        def send(*events: object) -> None:
            for event in events:
                writer.write(conn.send(event))

        if path == "/version":  # answers, then hangs up on the kept-alive connection
            send(h11.Response(status_code=200, headers=[("content-length", "2")]), h11.Data(data=b"{}"),
                 h11.EndOfMessage())
            await writer.drain()
            return True
        if path == "/_ping":  # as dockerd answers it: HEAD with Content-Length: 0 (not the GET's 2)
            head = self.received[-1][0] == "HEAD"
            send(h11.Response(status_code=200, headers=[("content-length", "0" if head else "2"),
                                                        ("api-version", "1.41")]))
            if not head:
                send(h11.Data(data=b"OK"))
            send(h11.EndOfMessage())
        elif path == "/containers/json":
            send(h11.Response(status_code=200, headers=[("content-type", "application/json")]),
                 h11.Data(data=b"[]\n"), h11.EndOfMessage())
        elif path == "/stream":
            send(h11.Response(status_code=200, headers=[("content-type", "application/json")]),
                 h11.Data(data=b"first\n"))
            await writer.drain()
            await self.release.wait()
            send(h11.Data(data=b"second\n"), h11.EndOfMessage())
        elif path == "/big":
            size = int(target.partition("n=")[2])
            send(h11.Response(status_code=200, headers=[("content-length", str(size))]))
            block = b"x" * (1 << 16)
            left = size
            while left:
                writer.write(block[:left])
                left -= min(left, len(block))
                await writer.drain()
            send(h11.EndOfMessage())
        elif path in ("/echo", "/build"):
            answer = json.dumps({"headers": headers, "size": len(body), "target": target}).encode()
            send(h11.Response(status_code=200, headers=[("content-length", str(len(answer)))]),
                 h11.Data(data=answer), h11.EndOfMessage())
        elif path == "/containers/c1/json":
            answer = b'{"Id": "c1", "Secret": "hunter2"}'
            send(h11.Response(status_code=200, headers=[("content-length", str(len(answer)))]),
                 h11.Data(data=answer), h11.EndOfMessage())
        elif path in RAW_THEN_HANG_UP:
            writer.write(RAW_THEN_HANG_UP[path])
            await writer.drain()
            return True
        elif path in ("/containers/c1/attach", "/containers/c2/attach"):
            await self.upgraded(conn, reader, writer, hold=path == "/containers/c2/attach")
            return True
        else:
            send(h11.Response(status_code=404, headers=[("content-length", "0")]), h11.EndOfMessage())
        await writer.drain()
        return False

    async def upgraded(self, conn, reader, writer, hold: bool = False) -> None:  # type: ignore[no-untyped-def]
        writer.write(conn.send(h11.InformationalResponse(status_code=101, reason=b"UPGRADED", headers=[
            ("content-type", "application/vnd.docker.raw-stream"), ("connection", "Upgrade"),
            ("upgrade", "tcp")])))
        writer.write(b"hello from the container\n")
        data = conn.trailing_data[0]
        while True:
            if data:
                writer.write(data.upper())
                await writer.drain()
            data = await reader.read(1 << 16)
            if not data:
                break
        if hold:  # the container goes on after its stdin closed, until the test releases it
            await self.release.wait()
        writer.write(b"stdin closed\n")
        await writer.drain()


POLICY = """
[audit]
path = "{audit}"
syslog = false

[proxy]
listen = "{listen}"
group = "{group}"
upstream = "{upstream}"
max_body = 4096
max_build_context = 100000
{users}
"""


class Harness:
    def __init__(self, root: Path, users: str | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.listen = str(root / "proxy.sock")
        self.upstream = str(root / "engine.sock")
        self.audit = root / "audit.jsonl"
        self.audit.touch()
        self.policy = root / "policy.toml"
        me = getpass.getuser()
        self.write_policy(f'[proxy.users]\n{me} = "agent"' if users is None else users)
        self.loop = new_event_loop()  # the daemon's: uvloop's
        self.engine = FakeEngine()
        self.connections = 0
        self.servers: list[asyncio.AbstractServer] = []
        self.proxy = Proxy(load_state(str(self.policy)), stand_in_decide, stand_in_transform)

    def write_policy(self, users: str) -> None:
        group = grp.getgrgid(os.getgid()).gr_name
        self.policy.write_text(POLICY.format(audit=self.audit, listen=self.listen, group=group,
                                             upstream=self.upstream, users=users))

    def reload(self) -> None:
        self.proxy.state = load_state(str(self.policy), self.proxy.state.settings)

    def start(self) -> None:
        ready = threading.Event()
        self.thread = threading.Thread(target=self.run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def counted(reader: ClientStream, writer: ClientStream) -> None:
            self.connections += 1
            await self.proxy.handle(reader, writer)

        async def main() -> None:
            self.servers.append(await asyncio.start_unix_server(self.engine.handle, path=self.upstream))
            sock = listening_socket(self.listen, grp.getgrgid(os.getgid()).gr_name)
            self.servers.append(await serve_clients(self.proxy, sock, counted))
            ready.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()
        self.loop.run_until_complete(self.shutdown())
        self.loop.close()

    async def shutdown(self) -> None:
        """Every connection's task ended before the loop closes (none left for the GC)."""
        self.proxy.pool.close()
        self.proxy.log.close()
        for server in self.servers:
            server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Let the servers and transports closed here finish closing: uvloop closes what is left
        # when its loop closes, and an object the collector closes later would close a
        # descriptor number the next harness has been given meanwhile.
        await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def release_stream(self) -> None:
        self.loop.call_soon_threadsafe(self.engine.release.set)

    # ------------------------------------------------------------ clients

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send bytes, read until the proxy closes (refusals close the connection)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(self.listen)
            sock.sendall(data)
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
            return out

    def http(self) -> UnixHTTPConnection:
        return UnixHTTPConnection(self.listen)

    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.audit.read_text().splitlines()]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


@contextlib.contextmanager
def running(root: Path, users: str | None = None) -> Iterator[Harness]:
    harness = Harness(root, users)
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def message_of(response: bytes) -> str:
    return str(json.loads(response.partition(b"\r\n\r\n")[2])["message"])
