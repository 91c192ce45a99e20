"""The engine's answer to `/_ping`, remembered for a few seconds and given by the proxy.

Every docker command starts with `HEAD /_ping` (compose and SDKs with `GET /_ping`) to learn
the engine's API version, OS type, builder and swarm state. Through the proxy that question
cost a second engine round trip per command: the proxy's write, the engine's wake-up and
answer, the proxy's read and relay (two process wake-ups more on a 2-CPU machine, about
0.3-0.5 ms). The answer does not change between commands: its fields (Api-Version,
Builder-Version, Docker-Experimental, Ostype, Server, Swarm, Cache-Control, Pragma,
Content-Type, Content-Length, the body "OK") change only when the engine is reconfigured or
restarted.

So the proxy keeps the last 200 answer the engine gave to each ping it forwarded, per method
and exact request-target (a /vN.NN prefix can make the engine answer otherwise, 400 for a
version it does not serve) and per upstream socket, and gives it itself while it is younger
than FRESH_SECONDS, with a Date of now. Fails closed to forwarding: no answer known, an older
one, an answer that was not 200 with a Content-Length, or an engine that did not answer a
forwarded request (`forget`): the ping goes to the engine as before and its answer is
remembered anew. The decision and its audit record come first either way (the cache is asked
only for an allowed ping, after its record is written), so the log reads as before: a ping is
recorded as allowed whether the proxy or the engine answered it.
"""

from __future__ import annotations

import time

FRESH_SECONDS = 5.0  # an engine restart or reconfiguration shows in pings after at most this long
MAX_KEPT = 16  # distinct (upstream, method, target) kept; past that all are forgotten
MAX_BODY = 64  # bytes: a ping's body is "OK"
PING_PATH = "/_ping"
DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


class PingAnswer:
    """One engine answer to a ping: status line, end-to-end header fields (Date aside), body."""

    __slots__ = ("status", "reason", "headers", "body", "learned")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                 learned: float) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # in the engine's order; the Date field's value is replaced when given
        self.body = body
        self.learned = learned  # time.monotonic() when the engine gave it


class PingAnswers:
    """The remembered answers, keyed by (upstream socket, method, request-target)."""

    __slots__ = ("answers", "fresh_seconds")

    def __init__(self, fresh_seconds: float = FRESH_SECONDS) -> None:
        self.answers: dict[tuple[str, str, str], PingAnswer] = {}
        self.fresh_seconds = fresh_seconds

    def fresh(self, upstream: str, method: str, target: str) -> PingAnswer | None:
        answer = self.answers.get((upstream, method, target))
        if answer is None or time.monotonic() - answer.learned >= self.fresh_seconds:
            return None
        return answer

    def learn(self, upstream: str, method: str, target: str, status: int, reason: bytes,
              headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Remember a forwarded ping's answer if it is one to give again; otherwise forget
        what was known for that ping (the engine's latest word stands)."""
        key = (upstream, method, target)
        lengths = [value for name, value in headers if name == b"content-length"]
        plain = status == 200 and len(lengths) == 1 and len(body) <= MAX_BODY and \
            not any(name == b"transfer-encoding" for name, _ in headers) and \
            (method == "HEAD" or lengths[0] == b"%d" % len(body))
        if not plain:
            self.answers.pop(key, None)
            return
        if len(self.answers) >= MAX_KEPT:
            self.answers.clear()
        self.answers[key] = PingAnswer(status, reason, list(headers), b"" if method == "HEAD" else body,
                                       time.monotonic())

    def forget(self) -> None:
        """The engine did not answer: nothing remembered is given until it answers again."""
        self.answers.clear()


def is_ping(method: str, path: str) -> bool:
    """`path` as the decision read it: percent-decoded, version prefix removed."""
    return path == PING_PATH and method in ("GET", "HEAD")


def with_date(headers: list[tuple[bytes, bytes]], now: float | None = None) -> list[tuple[bytes, bytes]]:
    """The fields with the Date field's value set to now (as the engine would have dated it)."""
    date = http_date(time.time() if now is None else now)
    return [(name, date if name == b"date" else value) for name, value in headers]


def http_date(when: float) -> bytes:
    """IMF-fixdate (RFC 9110 5.6.7), as Go's net/http writes Date; no locale involved.
    Formatted once per second (the field has no finer resolution)."""
    second = int(when // 1)
    if second != LAST_DATE.second:
        t = time.gmtime(second)
        LAST_DATE.date = b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
            DAYS[t.tm_wday], t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)
        LAST_DATE.second = second
    return LAST_DATE.date


class LastDate:
    """The second last formatted by http_date, and its date."""

    __slots__ = ("second", "date")

    def __init__(self) -> None:
        self.second: int | None = None
        self.date = b""


LAST_DATE = LastDate()
