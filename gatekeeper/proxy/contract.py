"""What the proxy's transport hands its decision, and what it gets back.

The transport (server.py) reads a whole request (framing refused there: chunked,
oversized, duplicate or conflicting length headers), finds the caller's profile from
SO_PEERCRED and [proxy.users], and calls

    vet_api_request(request, policy, engine) -> ApiVerdict        (vet.py)

in a worker thread (the decision may ask the engine synchronously). It forwards
`verdict.target`/`verdict.body` only when `verdict.allowed`; otherwise it answers
403 with {"message": "gatekeeper: denied: <reason> (rule <rule>)"} so the docker CLI
prints the reason. When `verdict.response` names a transform, the transport buffers
that (small, non-streamed) response and forwards

    transform_response(verdict.response, status, body, request) -> bytes   (vet.py)

instead. When `verdict.afterwards` names engine steps (gatekeeper.proxy.pulls: a pull to
record, an image's pull records to forget), the transport takes them once the engine has
answered 200 and the answer came whole (a pull: before the client sees its end).
Every request is audited with layer "api", uid, profile, endpoint, rule.
"""

from __future__ import annotations

from typing import IO, Protocol


class ApiRequest:
    """One complete HTTP request as received from a client of the proxy socket."""

    __slots__ = ("method", "target", "path", "version", "query", "headers", "body", "uid", "profile",
                 "context")

    def __init__(self, method: str, target: str, path: str, version: str | None,
                 query: dict[str, list[str]], headers: list[tuple[str, str]], body: bytes,
                 uid: int, profile: str, context: IO[bytes] | None = None) -> None:
        self.method = method      # "GET", "POST", ... (upper case)
        self.target = target      # the raw request-target, e.g. "/v1.43/containers/create?name=x"
        self.path = path          # percent-decoded, version prefix removed: "/containers/create"
        self.version = version    # "1.43", or None when the client sent no /vN.NN prefix
        self.query = query        # parse_qs of the query string (keep_blank_values=True)
        self.headers = headers    # (lower-cased name, value) in order received
        self.body = body          # the complete body (b"" when none)
        self.uid = uid            # the caller's uid (SO_PEERCRED)
        self.profile = profile    # the caller's profile from [proxy.users]
        self.context = context    # POST /build: the file the body was spooled to (body is then b"")


class ApiVerdict:
    """The decision on one request."""

    __slots__ = ("allowed", "rule", "reason", "endpoint", "target", "body", "response", "status",
                 "afterwards", "answered_by", "starts", "made_volumes")

    def __init__(self, allowed: bool, rule: str, reason: str, endpoint: str,
                 target: str | None = None, body: bytes | None = None,
                 response: str | None = None, status: int = 403,
                 afterwards: tuple[str, ...] | None = None) -> None:
        self.allowed = allowed
        self.rule = rule          # a rule id listed in gatekeeper/rules.py
        self.reason = reason      # one line the agent can act on (what, why, what instead)
        self.endpoint = endpoint  # canonical endpoint id for the audit log, e.g. "container.create"
        self.target = target      # request-target to forward (names resolved to IDs); None: unchanged
        self.body = body          # body to forward (e.g. owner label injected); None: unchanged
        self.response = response  # name of a response transform (redaction); None: relay as is
        self.status = status      # a denial's HTTP status: 403, or 404 where clients go on past it
        self.afterwards = afterwards  # an engine step once the engine answered 200 (gatekeeper.proxy.pulls)
        # A GET the decision asked whose answer is the one forwarding would get (the same object
        # at the same API version, no query): when it answered 200, the transport may send that
        # answer, transformed as `response` says, instead of asking the engine again.
        self.answered_by: str | None = None
        # The container a start names (its ID, as judged): a start refused after the decision
        # (its record could not be written) is settled as vet.start_refused settles one.
        self.starts: str | None = None
        # Volumes the decision made for a create (proxy.containers.create_new_volumes): a create
        # refused after the decision (budget, audit write) removes them again (proxy.leftovers).
        self.made_volumes: tuple[str, ...] = ()


class EngineQueries(Protocol):
    """Synchronous questions to the upstream engine (not through the proxy's own socket),
    and the one question about the host the decision needs (where a bind source resolves)."""

    def get_json(self, target: str) -> tuple[int, object]:
        """GET `target` (e.g. "/containers/abc/json") upstream: (HTTP status, parsed JSON body)."""
        ...

    def realpath(self, path: str) -> str:
        """Resolve a host path, following symlinks, as the engine (root) will when it mounts it;
        raise gatekeeper.errors.Denied where it must not guess (a device node, an unreadable
        component). gatekeeper.worlds.RealWorld.realpath is such a function. Bind sources in
        create bodies are checked (gatekeeper.paths) and forwarded in this resolved form."""
        ...

    def inert_mount(self, path: str) -> bool:
        """Whether `path` (or its nearest existing ancestor) is on a nosuid,nodev mount, as the
        engine will find it (gatekeeper.worlds.mount_is_inert)."""
        ...

    def addresses(self, name: str) -> list[str]:
        """The addresses a registry name resolves to on this host (gatekeeper.worlds.host_addresses)."""
        ...
