"""Engine questions without a second process.

Ownership, existence and bind-source queries (`docker <kind> inspect --format F
-- WORDS`) are answered from the engine's API over its unix socket: one small
HTTP/1.1 GET per named object, read with a size bound and a deadline, parsed
strictly. The answer is rendered as the docker CLI prints it for the same
template (stdout lines, exit status, one stderr line per failure), so the
vetters that ask stay unchanged and the CLI remains the reference: the e2e test
tests/e2e/test_engine_api.py compares the two on the real engine.

Listings (`docker container|volume|network ls` with label filters and a plain
template) are answered the same way by gatekeeper.engine_listing.

Only questions this module knows are answered here (`answer_from_api` returns
None for the rest, and the caller spawns the CLI as before):
* the policy's [docker] host is `unix:///absolute/path` (a proxy deployed there
  is asked the same way; tcp://, ssh:// and the rest stay with the CLI);
* the template is one of RENDERERS (an exact string);
* every word is a plain object reference that a URL path carries unchanged
  (no `.`/`..` segments, no query, no escapes): anything else goes to the CLI.

Anything unexpected in the answer (no socket, a short or oversized response,
a status other than 200/404, a body that is not the expected JSON object, a
missed deadline) is a failed query (status 1): every caller denies on it.

Import cost matters here (every owned-scope command pays it): the C module
`_socket` only (socket.py pulls in selectors and enum), `json` when an answer
arrives; http.client would pull in email.* and ssl. JSON goes through
gatekeeper.json_codec (the C accelerator alone; `import json` costs ~1.2 ms).
"""

from __future__ import annotations

import _socket

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Render = Callable[[dict[str, Any]], str]  # one inspect object -> the line the CLI prints

MAX_RESPONSE = 4 << 20  # an inspect object is a few KB; more than 4 MB is refused
MAX_HEADER = 16 << 10
STDERR_LIMIT = 300

PLURALS = {"container": "containers", "image": "images", "volume": "volumes", "network": "networks"}
REF_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
REF_REST = REF_FIRST | frozenset("_.-:@")


class EngineError(Exception):
    """The engine's answer was not what a well-behaved engine sends: fail closed."""


class Missing(Exception):
    """The engine says the object does not exist (404): the CLI's 'No such ...'."""


# ---------------------------------------------------------------- the entry point


def answer_from_api(host: str, args: list[str], timeout: float) -> tuple[int, bytes, bytes] | None:
    """(status, stdout, stderr) as `docker ARGS` would print them, or None if this
    question is not one the API path answers (the caller runs the CLI)."""
    if args[1:2] == ["ls"]:
        from gatekeeper.engine_listing import answer_listing

        return answer_listing(host, args, timeout)
    question = known_question(host, args)
    if question is None:
        return None
    path, kind, render, words = question
    return ask_each(path, kind, render, words, timeout)


def known_question(host: str, args: list[str]) -> tuple[str, str, Render, list[str]] | None:
    if len(args) < 6 or args[1:3] != ["inspect", "--format"] or args[4] != "--":
        return None
    kind, template, words = args[0], args[3], args[5:]
    render = renderers().get((kind, template))
    path = socket_path(host)
    if render is None or path is None or not all(url_reference(kind, word) for word in words):
        return None
    return path, kind, render, words


def ask_each(path: str, kind: str, render: Render, words: list[str],
             timeout: float) -> tuple[int, bytes, bytes]:
    """One request per word, in order, within one deadline; the CLI prints the
    objects it found and one error line per word it could not resolve."""
    import time

    deadline = time.monotonic() + timeout
    out: list[str] = []
    errors: list[str] = []
    for word in words:
        try:
            obj = inspect_object(path, kind, word, deadline)
            out.append(render(obj) + "\n")
        except Missing as missing:
            errors.append(f"Error response from daemon: {missing}")
        except (EngineError, OSError) as error:
            errors.append(f"cannot ask the engine about {kind} {word!r}: {shown(str(error))}")
            return 1, "".join(out).encode(), ("\n".join(errors) + "\n").encode()
    if errors:
        return 1, "".join(out).encode(), ("\n".join(errors) + "\n").encode()
    return 0, "".join(out).encode(), b""


def disk_usage(host: str, timeout: float) -> dict[str, object]:
    """GET /system/df: the engine's own accounting of images, containers, volumes and
    build cache (gatekeeper.vetting.disk_budget). EngineError when it cannot be had."""
    import time

    path = socket_path(host)
    if path is None:
        raise EngineError(f"[docker] host {host!r} is not a unix socket the API can be asked on")
    status, body = http_get(path, "/system/df", time.monotonic() + timeout)
    value = parse_json(body)
    if status != 200 or not isinstance(value, dict):
        raise EngineError(f"unexpected answer to /system/df (HTTP {status})")
    return value


# ---------------------------------------------------------------- what may be asked


def socket_path(host: str) -> str | None:
    """The socket of `unix:///abs/path`; None for any other engine address."""
    if not host.startswith("unix:///"):
        return None
    path = host[len("unix://"):]
    if "\0" in path or "?" in path or "#" in path or "%" in path:
        return None
    return path


def url_reference(kind: str, word: str) -> bool:
    """A word the URL path carries as it is: segments of [A-Za-z0-9][A-Za-z0-9_.:@-]*
    separated by single slashes (an image's repository path). No `.`/`..` segment
    can make the engine's router clean the path into another endpoint, and no byte
    needs escaping."""
    if not word or len(word) > 512:
        return False
    segments = word.split("/")
    if kind != "image" and len(segments) != 1:
        # A container's '/name' goes to the CLI: a GET of '/containers//name/json' failed
        # where the CLI found the container (e2e), and 'name' alone could match an ID prefix.
        return False
    return all(segment and segment[0] in REF_FIRST and set(segment) <= REF_REST for segment in segments)


# ---------------------------------------------------------------- one request


def inspect_object(path: str, kind: str, word: str, deadline: float) -> dict[str, object]:
    """GET /<kind>s/<word>[/json]: the object (200), Missing (404), else EngineError."""
    suffix = "" if kind in {"volume", "network"} else "/json"
    status, body = http_get(path, f"/{PLURALS[kind]}/{word}{suffix}", deadline)
    value = parse_json(body)
    if status == 200 and isinstance(value, dict):
        return value
    message = value.get("message") if isinstance(value, dict) else None
    if not isinstance(message, str):
        raise EngineError(f"unexpected answer (HTTP {status})")
    if status == 404:
        raise Missing(shown(message))
    raise EngineError(f"HTTP {status}: {message}")


def http_get(path: str, target: str, deadline: float) -> tuple[int, bytes]:
    request = (f"GET {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: gatekeeper\r\n"
               "Accept: application/json\r\nConnection: close\r\n\r\n").encode("ascii")
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(remaining(deadline))
        conn.connect(path)
        conn.sendall(request)
        raw = read_all(conn, deadline)
    finally:
        conn.close()
    return parse_response(raw)


def remaining(deadline: float) -> float:
    import time

    left = deadline - time.monotonic()
    if left <= 0:
        raise EngineError("the engine did not answer in time")
    return left


def read_all(conn: _socket.socket, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        conn.settimeout(remaining(deadline))
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            raise EngineError("the engine did not answer in time") from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_RESPONSE + MAX_HEADER:
            raise EngineError(f"answer larger than {MAX_RESPONSE} bytes")
        chunks.append(chunk)


# ---------------------------------------------------------------- strict parsing


def parse_response(raw: bytes) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response read to the connection's end."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep or len(head) > MAX_HEADER:
        raise EngineError("incomplete answer")
    lines = head.split(b"\r\n")
    status = status_code(lines[0])
    headers = header_fields(lines[1:])
    if headers.get("transfer-encoding") == "chunked":
        return status, dechunk(rest)
    if "transfer-encoding" in headers:
        raise EngineError("unexpected transfer encoding")
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) != len(rest)):
        raise EngineError("answer length does not match Content-Length")
    return status, rest


def status_code(line: bytes) -> int:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or parts[0] != b"HTTP/1.1" or len(parts[1]) != 3 or not parts[1].isdigit():
        raise EngineError("not an HTTP/1.1 answer")
    return int(parts[1])


def header_fields(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or not name.isascii():
            raise EngineError("malformed header")
        key = name.decode("ascii").lower()
        if key in headers and key in ("content-length", "transfer-encoding"):
            raise EngineError(f"repeated {key} header")
        headers[key] = value.strip().decode("latin-1").lower() if key == "transfer-encoding" \
            else value.strip().decode("latin-1")
    return headers


def dechunk(data: bytes) -> bytes:
    """Chunked transfer coding (RFC 9112 7.1), strictly: hex sizes, CRLFs, a 0 chunk."""
    out: list[bytes] = []
    at = 0
    while True:
        end = data.find(b"\r\n", at)
        if end < 0:
            raise EngineError("truncated chunked answer")
        size_text = data[at:end].split(b";", 1)[0]
        if not size_text or len(size_text) > 8 or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise EngineError("malformed chunk size")
        size = int(size_text, 16)
        at = end + 2
        if size == 0:
            if data[at:] not in (b"\r\n",):
                raise EngineError("trailers or data after the last chunk")
            return b"".join(out)
        if data[at + size:at + size + 2] != b"\r\n":
            raise EngineError("truncated chunk")
        out.append(data[at:at + size])
        at += size + 2


def parse_json(body: bytes) -> object:
    from gatekeeper.json_codec import loads

    try:
        return loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise EngineError("the answer is not JSON") from None


def shown(text: str) -> str:
    from gatekeeper.printable import printable

    return printable(text, STDERR_LIMIT)


# ---------------------------------------------------------------- rendering as the CLI does


def go_json(value: object) -> str:
    """`{{json .X}}` as the docker CLI prints it: Go's encoder without HTML escaping
    (the CLI turns it off), compact, map keys sorted, U+2028/2029 escaped."""
    from gatekeeper.json_codec import dumps

    text = dumps(value, ensure_ascii=False, sort_keys=True)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def field(obj: dict[str, object], name: str, kind: type = str) -> object:
    value = obj.get(name)
    if not isinstance(value, kind):
        raise EngineError(f"the engine's object has no {name}")
    return value


def image_healthcheck(obj: dict[str, object]) -> str:
    """`{{json .Config.Healthcheck}}` (gatekeeper.vetting.limits' question): the CLI's Go
    struct prints its fields in struct order, this in sorted order; its one reader parses
    the JSON. No Config at all is the CLI's template error: a failed question."""
    config = obj.get("Config")
    if not isinstance(config, dict):
        raise EngineError("the engine's image has no Config")
    return go_json(config.get("Healthcheck"))


def config_labels(obj: dict[str, object]) -> str:
    """`{{with .Config}}{{json .Labels}}{{end}}`: empty without a Config."""
    config = obj.get("Config")
    if config is None:
        return ""
    if not isinstance(config, dict):
        raise EngineError("the engine's object has a malformed Config")
    return go_json(config.get("Labels"))


def last_tag_time(obj: dict[str, object]) -> str:
    """`{{json .Metadata.LastTagTime}}`: the engine's string, quoted; null when it sent none."""
    metadata = obj.get("Metadata")
    return go_json(metadata.get("LastTagTime") if isinstance(metadata, dict) else None)


def renderers() -> dict[tuple[str, str], Callable[[dict[str, Any]], str]]:
    """(kind, template) -> the line the CLI prints for one object. The templates are
    written out here, not imported: a template changed by its owner no longer matches
    and goes to the CLI instead of being rendered wrongly (tests/test_engine_api.py
    says when an owner's template is no longer answered here)."""
    with_labels = "{{with .Config}}{{json .Labels}}{{end}}"
    return {
        ("container", "{{.Id}}\t{{json .Name}}\t" + with_labels + "\t{{.Image}}"): lambda o: "\t".join(
            (str(field(o, "Id")), go_json(field(o, "Name")), config_labels(o), str(field(o, "Image")))),
        ("image", "{{.Id}}\t{{json .RepoTags}}\t" + with_labels + "\t{{json .RepoDigests}}"
                  "\t{{json .Metadata.LastTagTime}}"):
            lambda o: "\t".join((str(field(o, "Id")), go_json(o.get("RepoTags")), config_labels(o),
                                 go_json(o.get("RepoDigests")), last_tag_time(o))),
        ("image", "{{json .Config.Healthcheck}}"): image_healthcheck,
        ("volume", "{{.Name}}\t{{json .Name}}\t{{json .Labels}}"): lambda o: "\t".join(
            (str(field(o, "Name")), go_json(field(o, "Name")), go_json(o.get("Labels")))),
        ("network", "{{.Id}}\t{{json .Name}}\t{{json .Labels}}"): lambda o: "\t".join(
            (str(field(o, "Id")), go_json(field(o, "Name")), go_json(o.get("Labels")))),
        ("volume", "{{.Name}}\t{{.Driver}}\t{{json .Options}}\t{{json .Labels}}"): lambda o: "\t".join(
            (str(field(o, "Name")), str(field(o, "Driver")), go_json(o.get("Options")),
             go_json(o.get("Labels")))),
        # gatekeeper.vetting.running: how many of the named containers a start would start
        ("container", "{{.State.Running}}"): lambda o: "true" if field(
            field(o, "State", dict), "Running", bool) else "false",  # type: ignore[arg-type]  # field checked it is a dict
        # the whole object; its readers (gatekeeper.vetting.binds) take fields by name
        ("container", "{{json .}}"): lambda o: go_json(o) if isinstance(field(o, "Id"), str) else "",
    }
