"""A stand-in docker engine on a unix socket, answering the requests `docker inspect`
makes from canned objects: enough for the real docker CLI to format templates
against it, without a daemon. Every request path is recorded."""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote

API_VERSION = "1.41"


def as_go_encodes(value: object) -> bytes:
    """The engine's json.NewEncoder: compact, <, > and & escaped, a newline at the end."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode() + b"\n"


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, objects: dict[str, dict[str, object]]) -> None:
        self.objects = objects  # "containers/web" -> the object's JSON
        self.requests: list[str] = []
        super().__init__(path, Handler)

    def get_request(self):  # type: ignore[no-untyped-def]
        request, _ = super().get_request()
        return request, ("local", 0)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeEngine

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        path = unquote(self.path.partition("?")[0])
        if path.startswith("/v") and path[2:3].isdigit():  # /v1.41/..., not /volumes
            path = "/" + path.split("/", 2)[2]
        status, body = self.lookup(path)
        data = b"OK" if path == "/_ping" else as_go_encodes(body)
        self.send_response_only(status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Ostype", "linux")
        self.send_header("Content-Type", "text/plain" if path == "/_ping" else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def lookup(self, path: str) -> tuple[int, object]:
        if path == "/_ping":
            return 200, None
        if path == "/version":
            return 200, {"Version": "20.10.24", "ApiVersion": API_VERSION, "MinAPIVersion": "1.12"}
        if path == "/info":
            return 200, {"Swarm": {"ControlAvailable": False, "NodeID": ""}, "Name": "fake"}
        parts = path.strip("/").split("/")
        key = "/".join(parts[:-1] if parts[-1] == "json" else parts)
        kind, _, ref = key.partition("/")
        if key in self.server.objects:
            return 200, self.server.objects[key]
        nouns = {"containers": "container", "images": "image", "networks": "network", "volumes": "volume"}
        return 404, {"message": f"No such {nouns.get(kind, 'object')}: {ref}"}

    def log_message(self, format: str, *args: object) -> None:
        pass


class RefusingHandler(Handler):
    """`gatekeeper proxy` to a caller not in [proxy.users]: 403 to everything."""

    def lookup(self, path: str) -> tuple[int, object]:
        return 403, {"message": "gatekeeper: uid 0 is not in [proxy.users] (rule api-user)"}


@contextlib.contextmanager
def fake_engine(directory: Path, objects: dict[str, dict[str, object]], *, name: str = "fake.sock",
                handler: type[Handler] = Handler) -> Iterator[FakeEngine]:
    server = FakeEngine(str(directory / name), objects)
    server.RequestHandlerClass = handler
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# An image named `img`, as the unit tests' commands run it: run/create ask for its labels
# (gatekeeper.vetting.ownership.check_inherited_labels), none of which it carries, and
# whether the agent may use it (gatekeeper.image_scope): it came from a registry (a digest).
IMG: dict[str, object] = {"Id": "sha256:" + "5" * 64, "RepoTags": ["img:latest"], "Config": {"Labels": None},
                          "RepoDigests": ["img@sha256:" + "6" * 64]}
