"""Engine listings without a second process.

`docker container ls`, `volume ls` and `network ls` as the vetters ask them
(owned containers for bind sources, running counts for max_running, a
project's containers, prune listings against [protect] names, compose's
existing volumes and networks, pull records) are answered from the engine's
list endpoints over its unix socket (`GET /containers/json?all=1&filters=...`,
`/volumes`, `/networks`), printed as the CLI prints them for the same flags
and template. tests/e2e/test_engine_api.py compares both on the real engine.

Only this shape is answered here (anything else: None, and the caller runs the CLI):
* flags: `-a` (containers), `-q`, `--no-trunc` (containers, networks),
  `--filter label=KEY` / `label=KEY=VALUE`, `--format TEMPLATE`;
* a template of literal text and the fields FIELDS names for that kind
  (`{{.ID}}`, `{{.Names}}`, `{{.Name}}`, `{{.Label "key"}}`), or `-q`.
One difference is kept on purpose: the CLI sorts volumes and networks by name
(natural order) and the API path prints them in the engine's order; every
caller reads these listings as sets.

Any odd answer (see gatekeeper.engine_api) is a failed query, status 1.
"""

from __future__ import annotations

from gatekeeper.engine_api import EngineError, http_get, parse_json, shown, socket_path

ENDPOINTS = {"container": "/containers/json", "volume": "/volumes", "network": "/networks"}
QUIET = {"container": "{{.ID}}", "volume": "{{.Name}}", "network": "{{.ID}}"}
FIELDS = {"container": frozenset({"ID", "Names", "Label"}), "volume": frozenset({"Name", "Label"}),
          "network": frozenset({"ID", "Name", "Label"})}
FLAGS = {"container": frozenset({"-a", "-q", "--no-trunc"}), "volume": frozenset({"-q"}),
         "network": frozenset({"-q", "--no-trunc"})}
LABEL_KEY = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@=")
ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
LITERAL = ALNUM | frozenset("\t |:,;=-_/")
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
SHORT_ID = 12


class Listing:
    """One `<kind> ls` question: flags, label filters and the parsed template."""

    __slots__ = ("kind", "flags", "labels", "template")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.flags: set[str] = set()
        self.labels: list[str] = []
        self.template: list[tuple[str, str]] = []  # ("text", s) | ("field", name) | ("label", key)


def answer_listing(host: str, args: list[str], timeout: float) -> tuple[int, bytes, bytes] | None:
    """(status, stdout, stderr) as `docker ARGS` prints them, or None (ask the CLI)."""
    path = socket_path(host)
    listing = parse_listing(args)
    if path is None or listing is None:
        return None
    import time

    try:
        rows = list_objects(path, listing, time.monotonic() + timeout)
        out = "".join(render(listing, row) + "\n" for row in rows)
    except (EngineError, OSError) as error:
        return 1, b"", f"cannot list the engine's {listing.kind}s: {shown(str(error))}\n".encode()
    return 0, out.encode(), b""


# ---------------------------------------------------------------- the question


def parse_listing(args: list[str]) -> Listing | None:
    if len(args) < 2 or args[0] not in ENDPOINTS or args[1] != "ls":
        return None
    listing = Listing(args[0])
    template = read_options(listing, args[2:])
    parsed = None if template is None else parse_template(listing.kind, template)
    if parsed is None:
        return None
    listing.template = parsed
    return listing


def read_options(listing: Listing, words: list[str]) -> str | None:
    """The flags and filters into `listing`; the template (-q's for -q), or None
    for anything not answered here."""
    template, at = None, 0
    while at < len(words):
        word = words[at]
        if word in FLAGS[listing.kind] and word not in listing.flags:
            listing.flags.add(word)
            at += 1
            continue
        value = words[at + 1] if at + 1 < len(words) else None
        if value is not None and word == "--filter" and add_label_filter(listing, value):
            pass
        elif value is not None and word == "--format" and template is None:
            template = value
        else:
            return None
        at += 2
    if (template is None) == ("-q" not in listing.flags):
        return None  # the table layout, or -q and --format together: the CLI's
    return template or QUIET[listing.kind]


def add_label_filter(listing: Listing, value: str) -> bool:
    """`label=KEY` or `label=KEY=VALUE` of plain characters; other filters go to the CLI."""
    if not value.startswith("label=") or len(value) > 512:
        return False
    wanted = value[len("label="):]
    if not wanted or wanted[0] == "=" or not set(wanted) <= LABEL_KEY:
        return False
    listing.labels.append(wanted)
    return True


def parse_template(kind: str, template: str) -> list[tuple[str, str]] | None:
    """Literal text and `{{.Field}}` / `{{.Label "key"}}` actions, nothing else."""
    parts: list[tuple[str, str]] = []
    rest = template
    while rest:
        start = rest.find("{{")
        text = rest if start < 0 else rest[:start]
        if text:
            if not set(text) <= LITERAL:
                return None
            parts.append(("text", text))
        if start < 0:
            break
        end = rest.find("}}", start)
        if end < 0:
            return None
        action = parse_action(kind, rest[start + 2:end])
        if action is None:
            return None
        parts.append(action)
        rest = rest[end + 2:]
    return parts or None


def parse_action(kind: str, action: str) -> tuple[str, str] | None:
    if action.startswith(".Label \"") and action.endswith("\"") and "Label" in FIELDS[kind]:
        key = action[len(".Label \""):-1]
        return ("label", key) if key and set(key) <= LABEL_KEY - {"="} else None
    name = action[1:]
    if action[:1] == "." and name in FIELDS[kind] and name != "Label":
        return ("field", name)
    return None


# ---------------------------------------------------------------- the request


def list_objects(path: str, listing: Listing, deadline: float) -> list[dict[str, object]]:
    status, body = http_get(path, target(listing), deadline)
    value = parse_json(body)
    if status != 200:
        message = value.get("message") if isinstance(value, dict) else None
        raise EngineError(f"HTTP {status}: {message}" if isinstance(message, str) else f"HTTP {status}")
    if listing.kind == "volume":
        value = value.get("Volumes") if isinstance(value, dict) else None
        value = [] if value is None else value
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise EngineError("the engine's listing is not a list of objects")
    return value


def target(listing: Listing) -> str:
    """The request target, with the filters as the CLI sends them: {"label":{"k=v":true}}."""
    query = []
    if "-a" in listing.flags:
        query.append("all=1")
    if listing.labels:
        from gatekeeper.json_codec import dumps

        filters = dumps({"label": {label: True for label in listing.labels}})
        query.append("filters=" + percent_encoded(filters))
    return ENDPOINTS[listing.kind] + ("?" + "&".join(query) if query else "")


def percent_encoded(text: str) -> str:
    return "".join(chr(byte) if byte in UNRESERVED else f"%{byte:02X}" for byte in text.encode("utf-8"))


# ---------------------------------------------------------------- printing as the CLI does


def render(listing: Listing, row: dict[str, object]) -> str:
    return "".join(value_of(listing, row, kind, name) for kind, name in listing.template)


def value_of(listing: Listing, row: dict[str, object], part: str, name: str) -> str:
    if part == "text":
        return name
    if part == "label":
        labels = row.get("Labels") or {}
        value = labels.get(name, "") if isinstance(labels, dict) else None
        if not isinstance(value, str):
            raise EngineError("the engine's object has malformed Labels")
        return value
    if name == "ID":
        ident = string_field(row, "Id")
        return ident if "--no-trunc" in listing.flags else ident[:SHORT_ID]
    if name == "Names":
        return container_names(row, truncated="--no-trunc" not in listing.flags)
    return string_field(row, "Name")


def string_field(row: dict[str, object], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value:
        raise EngineError(f"the engine's object has no {name}")
    return value


def container_names(row: dict[str, object], *, truncated: bool) -> str:
    """The CLI's {{.Names}}: '/'-prefix stripped; truncated, only the first name that is
    not a legacy link ('other/alias'); otherwise all of them, comma-separated."""
    names = row.get("Names")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise EngineError("the engine's container has no Names")
    stripped = [name.removeprefix("/") for name in names]
    if truncated:
        return next((name for name in stripped if "/" not in name), "")
    return ",".join(stripped)
