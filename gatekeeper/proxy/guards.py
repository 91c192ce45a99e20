"""What one caller may hold of the proxy at once, and how fast it may spend: the
limits a hostile agent with a shell and the proxy's socket meets before any of its
requests is decided.

    spool       bytes of build contexts being spooled, per uid and overall
                ([proxy] max_spool_per_user, max_spool): concurrent builds cannot fill
                the disk the contexts are spooled to (rule api-spool)
    connections open connections per uid ([proxy] max_connections_per_user): a
                caller cannot exhaust the proxy's descriptors (rule api-connections)
    serialised  creates and starts of one profile, decision and forwarding together
                (ProfileLocks): a check over everything the profile owns (the
                disjoint-bind invariant, max_running, names) is never made on a state
                another of its creates is changing
    budgets     [budgets] at the API layer (ApiBudgets): containers, pulls and builds
                counted per allowed request, as the CLI layer counts its commands
    floods      refusals that would each be a record (the audit intake over its rate,
                connections over the cap, requests over [proxy] request_rate:
                gatekeeper.proxy.request_rate) written as ONE summary record per caller
                and kind when their window ends (FloodGate): nothing is skipped
                silently, and nothing the agent sends can drown the log

Everything here runs on the proxy's event loop except ApiBudgets.charge, which the
decision's worker thread calls (it takes its own lock).
"""

from __future__ import annotations

import asyncio
import threading
import time

from gatekeeper.errors import Denied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from gatekeeper.policy import Policy

RULE_SPOOL = "api-spool"
RULE_CONNECTIONS = "api-connections"
RULE_SLOW = "api-slow-client"
RULE_INTAKE_RATE = "api-intake-rate"
RULE_BUSY = "api-busy"

# Endpoints whose decision reads the set of objects the profile owns (or counts what it
# runs) and whose forwarding changes that set: decided and forwarded one at a time per
# profile, up to the engine's answer (gatekeeper/inflight.py does the same for the CLI layer).
SERIALISED = frozenset({
    "container.create", "container.update", "container.start", "container.restart", "container.unpause",
    "container.rename", "network.create", "network.connect", "volume.create", "image.pull", "image.build",
})  # fmt: skip
# Seconds a request waits for its profile's earlier ones to be answered: a restart is answered
# after its stop timeout (10 s by default), and compose restarts a project's services at once.
LOCK_WAIT = 300.0

# [budgets] at the API layer: the endpoint an allowed request came to -> the budget it spends
# (gatekeeper.budgets: kind, policy key, window, unit). commands_per_minute stays the CLI
# layer's: one docker command is several API requests (a run: create, attach, start, wait),
# so a count of requests would be another budget with the same name.
BUDGET_OF_ENDPOINT = {"container.create": "containers", "image.pull": "pulls", "image.build": "builds"}


class SpoolLedger:
    """Bytes of build contexts held in spool files now, per uid and in total."""

    def __init__(self) -> None:
        self.by_uid: dict[int, int] = {}
        self.total = 0

    def take(self, uid: int, size: int, per_user: int, overall: int) -> str | None:
        """Count `size` more bytes for `uid`; None, or why not (then nothing is counted)."""
        mine = self.by_uid.get(uid, 0)
        if per_user and mine + size > per_user:
            return (f"build contexts being sent by uid {uid} would hold more than {per_user} bytes of the "
                    "proxy's spool at once ([proxy] max_spool_per_user); wait for your other builds to "
                    "be sent, or make the context smaller (.dockerignore)")
        if overall and self.total + size > overall:
            return (f"the proxy's spool for build contexts is full ({overall} bytes, [proxy] max_spool); "
                    "try again when other builds have been sent")
        self.by_uid[uid] = mine + size
        self.total += size
        return None

    def give_back(self, uid: int, size: int) -> None:
        left = self.by_uid.get(uid, 0) - size
        if left > 0:
            self.by_uid[uid] = left
        else:
            self.by_uid.pop(uid, None)
        self.total = max(0, self.total - size)


class ConnectionCount:
    """Open client connections per uid."""

    def __init__(self) -> None:
        self.by_uid: dict[int, int] = {}

    def open(self, uid: int, cap: int) -> bool:
        count = self.by_uid.get(uid, 0)
        if cap and count >= cap:
            return False
        self.by_uid[uid] = count + 1
        return True

    def close(self, uid: int) -> None:
        left = self.by_uid.get(uid, 0) - 1
        if left > 0:
            self.by_uid[uid] = left
        else:
            self.by_uid.pop(uid, None)


class ProfileLocks:
    """One asyncio lock per profile for the SERIALISED endpoints."""

    def __init__(self) -> None:
        self.locks: dict[str, asyncio.Lock] = {}

    def of(self, profile: str) -> asyncio.Lock:
        lock = self.locks.get(profile)
        if lock is None:
            lock = self.locks[profile] = asyncio.Lock()
        return lock

    async def acquire(self, profile: str, wait: float = LOCK_WAIT) -> asyncio.Lock:
        """The profile's lock, held; Denied (api-busy) after `wait` seconds."""
        lock = self.of(profile)
        try:
            async with asyncio.timeout(wait):
                await lock.acquire()
        except TimeoutError:
            raise Denied(f"another create of profile {profile!r} has waited {wait:.0f} s for the engine; "
                         "try again", rule=RULE_BUSY) from None
        return lock


class ApiBudgets:
    """[budgets] containers_per_hour, pulls_per_day, builds_per_day, counted by the proxy
    per profile in its own memory (root's: nothing the agent's account writes resets it;
    a restart of the proxy does)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.spent: dict[tuple[str, str], list[float]] = {}
        self.lock = threading.Lock()

    def charge(self, policy: Policy, profile: str, endpoint: str) -> None:
        """Spend one of the endpoint's budget for `profile`, or raise Denied (nothing spent)."""
        kind = BUDGET_OF_ENDPOINT.get(endpoint)
        if kind is None:
            return  # (most requests: a GET, a ping)
        from gatekeeper.budgets import BUDGETS, RULE_OF, describe

        _, key, window, unit = next(entry for entry in BUDGETS if entry[0] == kind)
        limit = policy.count_of("budgets", key)
        if not limit:
            return
        with self.lock:
            now = self.clock()
            recent = [at for at in self.spent.get((profile, kind), []) if now - at < window]
            if len(recent) >= limit:
                refill = recent[len(recent) - limit] + window
                when = time.strftime("%H:%M:%S UTC", time.gmtime(refill))
                # Stops: a loop (or a hostile agent on the socket) creating, pulling or building
                # without end, past the CLI layer's count.
                raise Denied(f"budget {key} = {limit} used up for profile {profile!r} ({len(recent)} {unit} "
                             f"in the last {describe(window)} through the proxy); it refills at {when} "
                             f"(in {max(1, round(refill - now))} s)", rule=RULE_OF[kind])
            recent.append(now)
            self.spent[(profile, kind)] = recent


class FloodGate:
    """At most `rate` admitted events per caller and kind per window; the rest are counted
    and reported as one summary record per caller and kind once the window is over."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.window = window
        self.clock = clock
        self.wall = wall
        self.windows: dict[tuple[int, str], Window] = {}
        self.finished: list[dict[str, object]] = []
        # Counted on the loop and in worker threads (a record the full log refused), summed up
        # by the sweeper's thread: one lock.
        self.lock = threading.Lock()

    def admit(self, uid: int, kind: str, rate: int, size: int = 0) -> bool:
        with self.lock:
            entry = self.current(uid, kind)
            if not rate or entry.admitted < rate:
                entry.admitted += 1
                return True
            entry.refuse(size, self.wall())
            return False

    def count(self, uid: int, kind: str, detail: str) -> None:
        """One refusal decided elsewhere (request_rate's bucket), counted by `detail` (a
        method and endpoint template: a bounded set) into the caller's window of `kind`."""
        with self.lock:
            entry = self.current(uid, kind)
            entry.refuse(0, self.wall())
            by = entry.by if entry.by is not None else {}
            by[detail] = by.get(detail, 0) + 1
            entry.by = by

    def current(self, uid: int, kind: str) -> Window:
        """The caller's window of `kind`, a new one if the last is over (its summary then due);
        called with the lock held."""
        now = self.clock()
        entry = self.windows.get((uid, kind))
        if entry is None or now - entry.start >= self.window:
            if entry is not None and entry.refused:
                self.finished.append(entry.summary(uid, kind, self.window))
            entry = self.windows[(uid, kind)] = Window(now)
        return entry

    def summaries_due(self) -> bool:
        """Whether due() would hand out a summary now (asked before every intake record,
        so that one is written only when there is one; reads, changes nothing)."""
        now = self.clock()
        with self.lock:
            return bool(self.finished) or any(entry.refused and now - entry.start >= self.window
                                               for entry in self.windows.values())

    def due(self, force: bool = False) -> list[dict[str, object]]:
        """Summaries of windows that are over (of every window with refusals when `force`),
        each handed out once."""
        now = self.clock()
        with self.lock:
            out, self.finished = self.finished, []
            for key, entry in list(self.windows.items()):
                if force or now - entry.start >= self.window:
                    del self.windows[key]
                    if entry.refused:
                        out.append(entry.summary(key[0], key[1], self.window))
        return out


class Window:
    """One caller's count of one kind of event in one window."""

    __slots__ = ("start", "admitted", "refused", "refused_bytes", "first", "last", "by")

    def __init__(self, start: float) -> None:
        self.start = start
        self.admitted = 0
        self.refused = 0
        self.refused_bytes = 0
        self.first = 0.0
        self.last = 0.0
        self.by: dict[str, int] | None = None  # refusals by what was asked (FloodGate.count)

    def refuse(self, size: int, wall: float) -> None:
        self.refused += 1
        self.refused_bytes += size
        self.first = self.first or wall
        self.last = wall

    def summary(self, uid: int, kind: str, window: float) -> dict[str, object]:
        out: dict[str, object] = {
            "uid": uid, "kind": kind, "admitted": self.admitted, "refused": self.refused,
            "refused_bytes": self.refused_bytes, "first_refused": iso(self.first),
            "last_refused": iso(self.last), "window_seconds": window}  # fmt: skip
        if self.by is not None:
            out["by"] = dict(sorted(self.by.items()))
        return out


def iso(when: float) -> str:
    fraction = f"{when % 1:.6f}"[1:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + fraction + "Z"
