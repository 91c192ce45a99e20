"""How fast one caller may send requests to the proxy ([proxy] request_rate, request_burst):
a token bucket per uid, checked before anything else is done with a request (intake
records included).

Why: every request the proxy serves or decides is one audit record (~0.5 KiB). With a
shell as the agent, a loop of `curl --unix-socket ... /_ping` (or of GETs, or of records
to the audit intake, over many connections) would grow the log as fast as the proxy
answers, until the disk is full. Within the budget nothing changes: every request is
decided and recorded one by one. Past it a request is refused (429, rule
api-request-rate) and NOT recorded one by one: it is counted (guards.FloodGate, by method
and endpoint template) into one summary record per uid and minute. So the log grows at
most `request_rate` records a second plus a summary a minute, whatever the caller sends.

The bucket holds up to `request_burst` tokens and gains `request_rate` a second; each
request takes one, plus one per KiB of what its record carries that the caller chooses
(its target, twice; an intake record's body): the log then grows by about 1.6 KiB per
token at most whatever the caller sends (a record is ~0.6 KiB plus those bytes), where a
long target or a 64 KiB intake record would otherwise cost as much as a ping. (A denial's
reason may quote parts of a body; [audit] max_bytes is the hard bound.)
request_rate = 0 switches the budget off.
"""

from __future__ import annotations

import math
import time

from gatekeeper.errors import Denied
from gatekeeper.proxy.endpoints import find_route
from gatekeeper.proxy.intake import INTAKE_PATH

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

RULE_REQUEST_RATE = "api-request-rate"
COST_UNIT = 1024  # bytes of a record's caller-chosen fields per extra token


def cost(target: str, record: bytes) -> int:
    """Tokens a request takes: one, plus one per KiB of its target (counted twice: a record may
    carry it as sent and as forwarded) and of the intake record it carries (b"" for any other
    request: its body is vetted, not recorded)."""
    return 1 + (2 * len(target) + len(record)) // COST_UNIT


def spend(tokens: float, stamp: float, now: float, rate: int, burst: int,
          cost: int = 1) -> tuple[bool, float]:
    """One request of `cost` tokens against a bucket that held `tokens` at `stamp`: (taken,
    tokens now). Pure: the bucket refills at `rate` a second up to `burst`; a clock that went
    back refills nothing; a cost over the burst takes the whole burst (else never taken)."""
    level = min(float(burst), tokens + max(0.0, now - stamp) * rate)
    price = float(min(cost, burst))
    if level >= price:
        return True, level - price
    return False, level


def wait_for_token(tokens: float, rate: int, price: float = 1.0) -> float:
    """Seconds until a bucket holding `tokens` (< price) has `price` again."""
    return max(0.0, (price - tokens) / rate) if rate else 0.0


class RequestRate:
    """The buckets of every caller (uid), in the proxy's memory: nothing the agent's account
    writes refills them; a restart or a reload of the proxy (root's) does (to full)."""

    __slots__ = ("clock", "buckets")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: dict[int, tuple[float, float]] = {}  # uid -> (tokens, when)

    def take(self, uid: int, rate: int, burst: int, cost: int = 1) -> float:
        """0.0 if `uid` may send this request now (`cost` tokens spent), else the seconds until
        it may send it (nothing spent)."""
        if not rate:
            return 0.0
        now = self.clock()
        tokens, stamp = self.buckets.get(uid, (float(burst), now))
        taken, left = spend(tokens, stamp, now, rate, burst, cost)
        self.buckets[uid] = (left, now)
        return 0.0 if taken else max(wait_for_token(left, rate, min(cost, burst)), 1e-3)


def refusal(uid: int, rate: int, burst: int, wait: float) -> str:
    """The one line a caller over its budget reads (after the docker CLI's 'Error response
    from daemon: gatekeeper: denied: ')."""
    refill = math.ceil(burst / rate) if rate else 0
    return (f"uid {uid} sends requests faster than [proxy] request_rate = {rate} per second "
            f"(request_burst = {burst}); slow down: the next request is taken in {wait:.2f} s, "
            f"a full burst after {refill} s without requests")


def asked(method: str, path: str) -> str:
    """What a refused request asked for, as its summary counts it: a method and endpoint
    template (so the caller cannot grow the summary with made-up paths)."""
    if path == INTAKE_PATH or path.startswith(INTAKE_PATH + "/"):
        return f"POST {INTAKE_PATH}" if method == "POST" else "other intake"
    try:
        route, _ = find_route(method, path)
    except Denied:
        return "refused or unknown endpoint"
    return f"{route.method} {route.template}"
