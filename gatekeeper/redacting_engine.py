"""Inspect templates on redacted data: the engine as `docker inspect --format` sees it.

A Go template (`{{.Config.Env}}`) runs inside the docker CLI, on the objects
the engine sent, so redacting docker's printed output is impossible. Instead
the CLI talks to us: for the length of one command we listen on a unix socket
in a fresh 0700 directory, the pinned docker runs with DOCKER_HOST pointing
there and the agent's vetted argv, and every request it makes is passed to
the real engine (the policy's `docker.host`) only if it is one an inspect
needs: `/_ping`, `/version`, `/info` (reduced to the swarm flag the CLI looks at), and
the GET of one object (`/containers/REF/json`, `/images/REF/json`,
`/networks/REF`, `/volumes/REF`, `/plugins/REF/json`, and the swarm kinds).
An object the agent does not own is redacted before the CLI sees it, with the
same rule as the JSON output (gatekeeper.redaction); owned objects and the
engine's errors pass through as the engine sent them. So the template, docker's
own code, prints exactly what docker would print had the data been redacted
at the source, and docker's own lookup order and error messages are kept.

The listings ps, images, volume ls, network ls and system df take the same way
with a `--format` template (`{{.Labels}}` prints every object's labels): the GET
of the list (`/containers/json`, `/images/json`, `/volumes`, `/networks`,
`/system/df`: its images, containers and volumes), each object in it the agent
does not own redacted by the same rule.

Under [scope] ps = "owned" (images = "owned") the lists leave out the containers
(images) the agent does not own, as `docker ps` with its owner filters and the proxy's
lists do: compose lists (`compose ls`, `compose ps`, `compose images`) and `system df
-v` take this way for it (gatekeeper.vetting.families).

Anything else (an exec, a path with `.`/`..` segments, another method)
gets a 404: the socket gives nothing an inspect or a listing does not need.
Imported only for inspects and listings with a template; the ForceCommand path
never pays for it.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator

from gatekeeper.redaction import NONE_BUILT, owned_by, owned_lists, owned_only, redact_tree, redacted_listing

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Container

    from gatekeeper.policy import Policy

API_PREFIX = re.compile(r"^/v[0-9]+\.[0-9]+(?=/)")
# One object per request, by the reference the agent typed (already URL-escaped by the CLI).
OBJECT_PATHS = re.compile(
    r"^/(?:containers/[^/]+/json|images/.+/json|networks/[^/]+|volumes/[^/]+|plugins/.+/json"
    r"|services/[^/]+|tasks/[^/]+|nodes/[^/]+|secrets/[^/]+|configs/[^/]+)$"
)
# The lists a listing's template runs on (any query: filters, all, ...).
LIST_PATHS = re.compile(r"^/(?:containers/json|images/json|volumes|networks/?|system/df)$")
# Response headers that describe the connection, not the answer: we set our own.
HOP_HEADERS = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})
MAX_BODY = 32 << 20
UPSTREAM_TIMEOUT = 60.0
# Go's encoding/json escapes these in strings; the CLI's `--format json` prints raw bytes.
GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


class EngineSocket(http.client.HTTPConnection):
    """An HTTP connection to the engine on a unix socket."""

    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=UPSTREAM_TIMEOUT)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(UPSTREAM_TIMEOUT)
        sock.connect(self.socket_path)
        self.sock = sock


class Answer:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def not_found(path: str) -> Answer:
    body = json.dumps({"message": f"page not found: {path}"}).encode() + b"\n"
    return Answer(404, [("Content-Type", "application/json")], body)


def engine_socket_path(host: str) -> str:
    """The policy's docker.host as a socket path; only unix:// engines can be proxied."""
    if not host.startswith("unix://") or len(host) <= len("unix://"):
        raise ValueError(f"inspect templates need a unix:// docker.host, not {host!r}")
    return host[len("unix://"):]


def route(path: str) -> str | None:
    """'object', 'list', 'ping' or 'info' for a request the CLI may make during an inspect or a
    listing; None otherwise."""
    plain, _, _ = path.partition("?")
    plain = API_PREFIX.sub("", plain, count=1)
    segments = plain.split("/")
    if any(part in (".", "..") or part.lower().startswith("%2e") for part in segments[1:]):
        return None  # never let the engine's path cleaning turn a reference into another endpoint
    if plain in ("/_ping", "/version"):
        return "ping"  # the engine's version, asked by compose images: passed as it is
    if plain == "/info":
        return "info"
    if OBJECT_PATHS.match(plain):
        return "object"
    if LIST_PATHS.match(plain):
        return "list"
    return None


def go_json(value: object) -> bytes:
    """JSON as the engine's Go encoder writes it: compact, HTML-escaped, newline-terminated."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in GO_ESCAPES.items():
        text = text.replace(char, escape)
    return text.encode() + b"\n"


def shown(kind: str, answer: Answer, owner: str, keys: tuple[str, ...],
          only_owned: frozenset[str] = frozenset(), path: str = "",
          built: Container[str] = NONE_BUILT) -> Answer:
    """What the CLI gets: objects not owned by `owner` redacted, /info reduced to the swarm flag;
    in a list the kinds of `only_owned` ("containers", "images") not owned left out."""
    if answer.status != 200 or kind == "ping":
        return answer
    try:
        value = json.loads(answer.body)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("the engine sent something that is not JSON") from None
    if kind == "list":
        value = owned_only(value, list_kinds(path) & only_owned, owner, built)
        return Answer(200, answer.headers, go_json(redacted_list(value, owner, keys, built)))
    if not isinstance(value, dict):
        raise ValueError("the engine sent something that is not one object")
    if kind == "info":
        swarm = value.get("Swarm")
        control = swarm.get("ControlAvailable", False) if isinstance(swarm, dict) else False
        value = {"Swarm": {"ControlAvailable": control is True}}
    elif owned_by(value, owner, built):
        return answer  # the agent's own: byte for byte what the engine sent
    else:
        value = redact_tree(value, keys)
    return Answer(200, answer.headers, go_json(value))


# Which listed kinds each list path holds (the disk usage: both; volumes and networks: neither).
LIST_KINDS = {"/containers/json": frozenset({"containers"}), "/images/json": frozenset({"images"}),
              "/system/df": frozenset({"containers", "images"})}


def list_kinds(path: str) -> frozenset[str]:
    plain = API_PREFIX.sub("", path.partition("?")[0], count=1)
    return LIST_KINDS.get(plain, frozenset())


def redacted_list(value: object, owner: str, keys: tuple[str, ...],
                  built: Container[str] = NONE_BUILT) -> object:
    """A list of objects (volumes: {"Volumes": [...]}; the disk usage: its Images, Containers
    and Volumes), each not owned by `owner` redacted."""
    return redacted_listing(value, owner, keys, built)


def ask_engine(engine: str, method: str, path: str, user_agent: str | None) -> Answer:
    connection = EngineSocket(engine)
    try:
        headers = {"User-Agent": user_agent} if user_agent else {}
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        body = response.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise ValueError("the engine's answer is larger than 32 MiB")
        kept = [(name, value) for name, value in response.getheaders() if name.lower() not in HOP_HEADERS]
        return Answer(response.status, kept, body)
    finally:
        connection.close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RedactingServer

    def do_GET(self) -> None:
        self.answer(with_body=True)

    def do_HEAD(self) -> None:
        self.answer(with_body=False)

    def answer(self, *, with_body: bool) -> None:
        kind = route(self.path)
        if kind is None or (self.command == "HEAD" and kind != "ping"):
            reply = not_found(self.path)
        else:
            try:
                agent = self.headers.get("User-Agent")
                reply = ask_engine(self.server.engine, self.command, self.path, agent)
                reply = shown(kind, reply, self.server.owner, self.server.keys, self.server.only_owned,
                              self.path, self.server.built)
            except (OSError, ValueError, http.client.HTTPException) as error:
                body = json.dumps({"message": f"gatekeeper: {error}"}).encode() + b"\n"
                reply = Answer(502, [("Content-Type", "application/json")], body)
        self.send_response_only(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:
        """Nothing on stderr: the agent's stderr carries docker's own messages only."""


class RedactingServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, engine: str, owner: str, keys: tuple[str, ...],
                 only_owned: frozenset[str] = frozenset(), built: Container[str] = NONE_BUILT) -> None:
        self.engine = engine
        self.built = built  # the IDs the profile's build records name (gatekeeper.build_records)
        self.owner = owner
        self.keys = keys
        self.only_owned = only_owned
        super().__init__(path, Handler)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """UnixStreamServer gives '' as the peer; http.server wants a (host, port) pair."""
        request, _ = super().get_request()
        return request, ("local", 0)


@contextlib.contextmanager
def redacting_engine(policy: Policy, built: Container[str] = NONE_BUILT) -> Iterator[str]:
    """A DOCKER_HOST for the duration of the block: the engine, objects not owned redacted
    (an image is owned only when `built`, its build records' IDs, holds its ID)."""
    keys = policy.redact_keys
    owner = policy.profile
    engine = engine_socket_path(policy.host)
    directory = tempfile.mkdtemp(prefix="gk-inspect-", dir="/tmp")  # 0700, ours alone
    try:
        path = os.path.join(directory, "engine.sock")
        server = RedactingServer(path, engine, owner, keys, owned_lists(policy), built)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            yield f"unix://{path}"
        finally:
            server.shutdown()
            server.server_close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
