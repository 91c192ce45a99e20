"""Verdicts the proxy may give again without deciding again: an allowed GET or HEAD without a
body on an endpoint vetted from the request line alone (vet.vet_plain, vet.vet_listing: the
version ping, the lists), whose decision asked the engine nothing (Proxy.decide_on_loop offers
no other: an image list or image events under an owned scope read the caller's build records,
which every build changes); and (AnsweredVerdicts) an allowed GET or HEAD of one container
whose decision asked the engine one question, given again only when the engine answers that
question with the same bytes.

Such a decision is a pure function of the policy in force, the caller (uid, profile), the
method and the request-target (the path, its version prefix and its query): vet_api_request
reads nothing else for them, no header, no body, no clock. `docker ps` sends two of them
(HEAD /_ping, GET /containers/json), and deciding each again cost ~70 us of the proxy's
CPU per request (it runs with cold caches, woken after the CLI and the engine ran). Every
request is still recorded, budgeted ([budgets]) and rate-limited as before; only the
verdict is reused. A reloaded policy (a new PolicyState) starts with none kept.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from gatekeeper.proxy.contract import ApiRequest, ApiVerdict
from gatekeeper.proxy.endpoints import ROUTES
from gatekeeper.proxy.engine import EngineAnswer
from gatekeeper.proxy.settings import PolicyState

T = TypeVar("T")

PURE_VETTERS = frozenset({"plain", "listing"})
# Endpoint ids all of whose routes are vetted by a pure vetter (a verdict names its endpoint).
PURE_ENDPOINTS = frozenset(route.ident for route in ROUTES) - frozenset(
    route.ident for route in ROUTES if route.vetter not in PURE_VETTERS)
PURE_METHODS = frozenset({"GET", "HEAD"})
KEPT = 256  # verdicts kept per policy state (a caller varying its query cannot grow this)

Key = tuple[str, str, str, int]


class KeptPerState(Generic[T]):
    """Values by (method, target, profile, uid) for the policy state they were kept under; a
    reloaded policy (a new PolicyState) or KEPT of them starts afresh. Only requests without a
    body or a context are looked up; what may be kept is each subclass's `keep`."""

    __slots__ = ("state", "kept")

    def __init__(self) -> None:
        self.state: PolicyState | None = None
        self.kept: dict[Key, T] = {}

    def get(self, state: PolicyState, request: ApiRequest) -> T | None:
        if state is not self.state or request.body or request.context is not None:
            return None
        return self.kept.get((request.method, request.target, request.profile, request.uid))

    def store(self, state: PolicyState, request: ApiRequest, value: T) -> None:
        if state is not self.state or len(self.kept) >= KEPT:
            self.state, self.kept = state, {}
        self.kept[(request.method, request.target, request.profile, request.uid)] = value


def plain_allowed_read(request: ApiRequest, verdict: ApiVerdict) -> bool:
    """An allowed GET or HEAD without a body or a context whose verdict sends no body of its own,
    has no step after it, starts nothing and made no volume: what either memory may keep."""
    return (verdict.allowed and request.method in PURE_METHODS and not request.body
            and request.context is None and verdict.body is None and verdict.afterwards is None
            and verdict.starts is None and not verdict.made_volumes)


class PureVerdicts(KeptPerState[ApiVerdict]):
    """Allowed verdicts by (method, target, profile, uid), for the policy state they were given under."""

    __slots__ = ()

    def keep(self, state: PolicyState, request: ApiRequest, verdict: ApiVerdict) -> None:
        """Keep `verdict` if it is one to give again (see the module's docstring)."""
        if (plain_allowed_read(request, verdict) and verdict.endpoint in PURE_ENDPOINTS
                and verdict.answered_by is None):
            self.store(state, request, verdict)


QUESTION_METHODS = PURE_METHODS


class FirstQuestions(KeptPerState[str]):
    """The first engine GET the decision of a request asked (Proxy.decide_on_loop), by (method,
    target, profile, uid), for the policy state it was asked under: the next time the same
    request comes, that GET is fetched before the decision runs, instead of running the decision
    once only to learn what it asks (its verdict thrown away, ~35-70 us of cold Python for an
    inspect). Only GET and HEAD without a body. The decision then runs with that answer and asks
    whatever else it asks, as before; a question it does not ask is never used (the engine's
    answer to a GET it would have asked anyway, fetched a little earlier: a GET changes nothing).
    Every decision still runs whole, on answers fetched for this request."""

    __slots__ = ()

    def keep(self, state: PolicyState, request: ApiRequest, question: str) -> None:
        if request.method not in QUESTION_METHODS or request.body or request.context is not None:
            return
        self.store(state, request, question)


# Endpoints whose decision reads, beyond the policy, the caller and the request line, only the
# engine's answer about the one container the path names (vet_inspect, vet_object, vet_top:
# objects.resolve, [scope], [names]) and the labels of that container's image, which never change
# for an image ID (the proxy's memory of them, image_labels.ImageLabels, or a second question).
ANSWERED_ENDPOINTS = frozenset({"container.inspect", "container.logs", "container.top"})


class AnsweredVerdicts(KeptPerState[tuple[str, int, bytes, ApiVerdict]]):
    """Allowed verdicts of GET/HEAD requests on ANSWERED_ENDPOINTS whose decision asked the
    engine exactly one question, kept with that question and the engine's answer (status and
    body, byte for byte), by (method, target, profile, uid), for the policy state they were given
    under. The next time the same request comes, that question is fetched as before
    (FirstQuestions) and, when the engine answers it with the same bytes, the kept verdict is
    the decision: it is a function of the policy state, the request and those bytes, so deciding
    again could only give it again (~150 us of cold Python for an inspect: parsing the object,
    running the decision). Any other answer (the container changed, was replaced, another
    status) is decided afresh on the answer fetched for this request. Every request is still
    recorded, budgeted and rate-limited; the answer the client gets is the one just fetched."""

    __slots__ = ()

    def keep(self, state: PolicyState, request: ApiRequest, question: str, answer: EngineAnswer,
             verdict: ApiVerdict) -> None:
        if plain_allowed_read(request, verdict) and verdict.endpoint in ANSWERED_ENDPOINTS:
            self.store(state, request, (question, answer.status, answer.body, verdict))

    def given(self, state: PolicyState, request: ApiRequest, question: str,
              answer: EngineAnswer | Exception) -> ApiVerdict | None:
        """The kept verdict when `answer` to `question` is the one it was decided on, else None."""
        kept = self.get(state, request)
        if kept is None or isinstance(answer, Exception):
            return None
        asked, status, body, verdict = kept
        if asked != question or status != answer.status or body != answer.body:
            return None
        return verdict
