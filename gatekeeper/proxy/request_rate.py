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
request takes one. request_rate = 0 switches the budget off.
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


def spend(tokens: float, stamp: float, now: float, rate: int, burst: int) -> tuple[bool, float]:
    """One request against a bucket that held `tokens` at `stamp`: (taken, tokens now).
    Pure: the bucket refills at `rate` a second up to `burst`; a clock that went back
    refills nothing."""
    level = min(float(burst), tokens + max(0.0, now - stamp) * rate)
    if level >= 1.0:
        return True, level - 1.0
    return False, level


def wait_for_token(tokens: float, rate: int) -> float:
    """Seconds until a bucket holding `tokens` (< 1) has one again."""
    return max(0.0, (1.0 - tokens) / rate) if rate else 0.0


class RequestRate:
    """The buckets of every caller (uid), in the proxy's memory: nothing the agent's account
    writes refills them; a restart or a reload of the proxy (root's) does (to full)."""

    __slots__ = ("clock", "buckets")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: dict[int, tuple[float, float]] = {}  # uid -> (tokens, when)

    def take(self, uid: int, rate: int, burst: int) -> float:
        """0.0 if `uid` may send this request now (one token spent), else the seconds until
        it may send the next one (nothing spent)."""
        if not rate:
            return 0.0
        now = self.clock()
        tokens, stamp = self.buckets.get(uid, (float(burst), now))
        taken, left = spend(tokens, stamp, now, rate, burst)
        self.buckets[uid] = (left, now)
        return 0.0 if taken else max(wait_for_token(left, rate), 1e-3)


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
