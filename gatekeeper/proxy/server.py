"""The proxy's transport: asyncio; httptools (llhttp) reads the client's requests
(gatekeeper.proxy.request_reader) and the engine's answers (gatekeeper.proxy.wire).

For every request on a client connection (keep-alive included):
1. read the head and refuse what two parsers could read differently
   (gatekeeper.proxy.framing); read the whole body (a build context spooled to an
   unlinked 0600 file), within its cap; nothing has gone upstream yet;
2. the caller's profile from SO_PEERCRED and [proxy.users]; no profile, no policy: 403;
3. the decision (gatekeeper.proxy.vet, on the event loop; its engine GETs fetched there too;
   in a worker thread when it asks about host paths) and its audit record;
4. a denial is answered 403 {"message": "gatekeeper: denied: ... (rule ...)"}; an allowed
   request goes upstream on a fresh connection (or a pooled one for a small answer),
   re-framed by us (Content-Length, Connection: close) with the decision's target and body;
5. the response is relayed as it arrives: its head parsed by httptools, its body as raw reads
   (Content-Length counted, chunked relayed to the engine's end of response), an upgrade
   (attach, buildkit's /session and /grpc) as raw bytes both ways once the engine
   answers 101; a response the decision wants transformed (redaction) is read whole
   and rewritten by gatekeeper.proxy.vet.transform_response.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import IO, Any

from gatekeeper.audit import LogBusy
from gatekeeper.engine_api import EngineError
from gatekeeper.errors import AuditError, AuditFull, AuditShareFull, Denied
from gatekeeper.proxy import framing, guards, intake, pings, pulls, request_rate, wire
from gatekeeper.proxy.audit_log import KeptLog
from gatekeeper.proxy.client_stream import ClientStream
from gatekeeper.proxy.contract import ApiRequest, ApiVerdict, EngineQueries
from gatekeeper.proxy.endpoints import ROUTES, find_route
from gatekeeper.proxy.engine import EngineAnswer, UpstreamEngine, fetch_pooled, parsed
from gatekeeper.proxy.framing import FramingError, RequestHead
from gatekeeper.proxy.image_labels import ImageLabels
from gatekeeper.proxy.log_shares import LogShares
from gatekeeper.proxy.records import (
    Caller,
    api_record,
    audit_ceiling,
    audit_share,
    syslog_only,
    write_api_record,
)
from gatekeeper.proxy.request_reader import RequestReader
from gatekeeper.proxy.settings import PolicyState, ProxySettings
from gatekeeper.proxy.verdicts import AnsweredVerdicts, FirstQuestions, PureVerdicts

READ_SIZE = 1 << 18
MAX_HEAD = 64 << 10
MAX_TRANSFORMED = 16 << 20  # an inspect answer to redact; more is refused, not relayed raw
WRITE_HIGH_WATER = 1 << 20
POOL_LIMIT = 8
FETCHES_ON_LOOP = 4  # engine GETs one decision may have fetched on the event loop
TRANSFORM_ON_LOOP = 256 << 10  # a larger answer is redacted in a worker thread
CHUNKED_END = b"0\r\n\r\n"
BATCH_BELOW = 32 << 10  # a streamed read smaller than this that did not wait ...
BATCH_WAIT = 0.001  # ... makes the next read wait this long first (Batched)
LINGER_SECONDS = 2.0
USER_NAME_SECONDS = 10.0  # how long a uid's account name is taken as looked up (UserNames)
USER_NAMES_KEPT = 256
LINGER_BYTES = 1 << 20
PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

REASONS = {
    200: b"OK", 204: b"No Content", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 411: b"Length Required", 413: b"Content Too Large",
    417: b"Expectation Failed", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    501: b"Not Implemented", 502: b"Bad Gateway", 503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}

RULE_USER = "api-user"
RULE_UPSTREAM = "api-upstream"
# Refusals before a decision (framing, slow clients, connections over the cap) recorded one by
# one per uid and minute; past that, counted into one summary record (guards.FloodGate).
REFUSAL_RECORDS_PER_MINUTE = 60
SWEEP_SECONDS = 10.0
INTAKE_KIND = "audit-intake"
# The methods of the serialised endpoints' routes (POST, DELETE, ...): only these take a lock.
SERIALISED_METHODS = frozenset(route.method for route in ROUTES if route.ident in guards.SERIALISED)
# A kind of refusal counted into summaries -> its rule (any other kind is a rule id itself).
SUMMARY_RULES = {INTAKE_KIND: guards.RULE_INTAKE_RATE}
# Why a kind's refusals were not recorded one by one (the summary's reason); else "over the rate".
SUMMARY_WHY = {INTAKE_KIND: "over [proxy] intake_per_minute",
               request_rate.RULE_REQUEST_RATE: "over [proxy] request_rate and request_burst",
               AuditFull.rule: "the log was at [audit] max_bytes",
               AuditShareFull.rule: "the uid's records were at [audit] max_bytes_per_uid"}

Decide = Callable[[ApiRequest, object, EngineQueries], ApiVerdict]
Transform = Callable[[str, int, bytes, ApiRequest], bytes]
Record = Callable[[object, dict[str, object]], None]


class EngineNotAsked:
    """The engine of an inline try (Proxy.decide_on_loop): it answers get_json from what the
    event loop fetched before this try (`answers`); any other question marks the try void
    (a GET not fetched yet is noted in `missing`). Whatever the decision makes of the error
    raised here, the verdict of a void try is discarded."""

    __slots__ = ("asked", "answers", "missing", "images")

    def __init__(self, answers: dict[str, tuple[int, object] | Exception] | None = None,
                 images: ImageLabels | None = None) -> None:
        self.asked = False
        self.answers = answers if answers is not None else {}
        self.missing: str | None = None  # the first GET this try had no answer for
        self.images = images  # labels of content-addressed images seen before (objects.proven)

    def image_labels_known(self, image: str) -> dict[str, str] | None:
        return self.images.known(image) if self.images is not None else None

    def get_json(self, target: str) -> tuple[int, object]:
        answer = self.answers.get(target)
        if isinstance(answer, Exception):
            raise answer  # what the engine did to this question when it was fetched
        if answer is not None:
            return answer
        self.asked = True
        if self.missing is None:
            self.missing = target
        raise EngineError("asked again once the engine has answered")

    def realpath(self, path: str) -> str:
        self.asked = True
        raise EngineError("decided again in a worker thread")

    def inert_mount(self, path: str) -> bool:
        self.asked = True
        raise EngineError("decided again in a worker thread")

    def addresses(self, name: str) -> list[str]:
        self.asked = True
        raise EngineError("decided again in a worker thread")

    def create_volume(self, name: str, labels: dict[str, str]) -> tuple[int, object]:
        self.asked = True
        raise EngineError("decided again in a worker thread")

    def remove_container(self, ident: str) -> tuple[int, object]:
        self.asked = True
        raise EngineError("decided again in a worker thread")


class ClientIdle(Exception):
    """A kept-alive client connection unused past [proxy] idle_timeout."""


class Received:
    """One request read in full: its head, its body, and what the client sent after it."""

    __slots__ = ("event", "target", "body", "spool", "size", "after")

    def __init__(self, event: RequestHead, target: framing.Target, body: bytes, spool: IO[bytes] | None,
                 size: int, after: bytes) -> None:
        self.event = event
        self.target = target
        self.body = body      # the body when in memory
        self.spool = spool    # or the unlinked file it was spooled to (a build context)
        self.size = size
        self.after = after    # a pipelined next request, or the stream after an Upgrade


class UpstreamPool:
    """Idle keep-alive connections to the engine, for small answers (framing.small_answer):
    a request on one saves a connect and the engine's accept. GET and HEAD only, so a
    connection the engine closed while idle is retried once on a fresh one."""

    def __init__(self, limit: int = POOL_LIMIT) -> None:
        self.limit = limit
        self.idle: list[tuple[str, asyncio.StreamReader, asyncio.StreamWriter]] = []

    def take(self, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        while self.idle:
            where, reader, writer = self.idle.pop()
            if where == path and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    def give(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.idle) < self.limit:
            self.idle.append((path, reader, writer))
        else:
            writer.close()

    def close(self) -> None:
        """Close every idle connection (when the loop stops: uvloop closes what its loop still
        holds, and a transport closed again later, by the garbage collector, could close a
        descriptor number that was given to something else meanwhile)."""
        while self.idle:
            self.idle.pop()[2].close()


class Proxy:
    """Shared by every connection: the current policy state (swapped on reload) and the
    decision functions (the real ones, or a test's stand-in)."""

    def __init__(self, state: PolicyState, decide: Decide, transform: Transform,
                 record: Record | None = None, pure: PureVerdicts | None = None) -> None:
        self.state = state
        self.decide = decide
        self.transform = transform
        self.shares = LogShares()  # each uid's bytes in the live log ([audit] max_bytes_per_uid)
        self.log = KeptLog()  # the audit log's descriptor, kept for the event loop's records
        self.record: Record = record if record is not None else self.write_record
        self.pure = pure  # verdicts given again (gatekeeper.proxy.verdicts): only for vet's own decisions
        # the first question of a request's decision, fetched before it runs (verdicts.FirstQuestions)
        self.questions = FirstQuestions() if pure is not None else None
        # verdicts given again on the same answer to the same question (verdicts.AnsweredVerdicts)
        self.answered = AnsweredVerdicts() if pure is not None else None
        self.pool = UpstreamPool()
        self.pings = pings.PingAnswers()  # the engine's last answers to /_ping (gatekeeper.proxy.pings)
        self.images = ImageLabels()  # labels by image ID for ownership proofs (proxy.image_labels)
        self.user_names = UserNames()
        self.connections: set[asyncio.Task[None]] = set()
        self.spools = guards.SpoolLedger()
        self.open_connections = guards.ConnectionCount()
        self.locks = guards.ProfileLocks()
        self.budgets = guards.ApiBudgets()
        self.floods = guards.FloodGate()
        self.rates = request_rate.RequestRate()  # [proxy] request_rate per uid
        self.sweeper: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving loop, once a connection came

    async def handle(self, reader: ClientStream, writer: ClientStream) -> None:
        # Python 3.11's asyncio keeps no strong reference to a connection's task: one whose
        # only wake-up is a stream nobody else holds (an upgrade relay) was garbage-collected
        # mid-relay ("Task was destroyed but it is pending", the container's output lost).
        # One get_running_loop per connection: Python 3.11's checks the process id with a
        # system call every time (17 getpid per `docker ps` before the loop was kept).
        loop = self.loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is not None:
            self.connections.add(task)
            task.add_done_callback(self.connections.discard)
        if self.sweeper is None:
            self.sweeper = asyncio.ensure_future(self.sweep())
            self.log.claim()
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        connection = ClientConnection(self, reader, writer, peer_of(writer, self.user_names), loop)
        uid = connection.caller.uid
        counted = self.open_connections.open(uid, self.state.settings.max_connections_per_user)
        try:
            if counted:
                await connection.serve()
            else:
                await connection.refuse_connection(self.state)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as error:  # noqa: BLE001 - a bug closes this connection, never the daemon
            report(error)
        finally:
            if counted:
                self.open_connections.close(uid)
            writer.close()

    def write_record(self, policy: object, record: dict[str, object]) -> None:
        """The proxy's own record: counted against its uid's share of the live log, on the kept log."""
        write_api_record(policy, record, self.shares, self.log)  # type: ignore[arg-type]  # Record: policy as object

    async def sweep(self) -> None:
        """Summaries of refusals whose window is over, written even when no request comes."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await loop.run_in_executor(None, self.write_summaries, self.state)
            except Exception as error:  # noqa: BLE001 - never stop sweeping
                report(error)

    def write_summaries(self, state: PolicyState, force: bool = False) -> None:
        """One record per caller and kind of refusal counted but not recorded one by one."""
        for summary in self.floods.due(force):
            uid = int(str(summary["uid"]))
            caller = Caller(0, uid, -1, intake.user_name(uid))
            rule = SUMMARY_RULES.get(str(summary["kind"]), str(summary["kind"]))
            reason = (f"{summary['refused']} more {summary['kind']} refusals of uid {uid} in "
                      f"{summary['window_seconds']:.0f} s were not recorded one by one "
                      f"({SUMMARY_WHY.get(str(summary['kind']), 'over the rate')})")
            record = api_record(caller, None, "", "", endpoint=f"summary {summary['kind']}", allowed=False,
                                rule=rule, reason=reason, policy=state.policy)
            record["summary"] = summary
            self.write_best_effort(state, record)

    def write_best_effort(self, state: PolicyState, record: dict[str, object]) -> None:
        if state.policy is None:
            syslog_only(record)
            return
        try:
            self.record(state.policy, record)
        except AuditError:
            syslog_only(record)

    # ------------------------------------------------------------ decision

    async def decide_on_loop(self, request: ApiRequest, state: PolicyState, caller: Caller,
                             body: dict[str, object],
                             fetched: dict[str, EngineAnswer] | None = None) -> ApiVerdict | None:
        """The decision on the event loop, without a thread hop: most requests (pings, lists,
        creates) ask the engine nothing. One that asks GETs (an inspect, a name to resolve)
        is stopped at its first unanswered question; the loop fetches the answer (on its own
        connection, as UpstreamEngine would) and runs the decision again with every answer so
        far, until it asks nothing new (the decision is pure apart from its engine: running it
        again changes nothing, and the void tries' verdicts are thrown away). None when it
        asks the host (realpath, mounts) or more than FETCHES_ON_LOOP GETs: decide_and_record
        then runs it in a worker thread with the real engine. `fetched` gets each answer as the
        engine gave it (an inspect may be answered with it: ApiVerdict.answered_by).
        The GET the same request's decision asked first last time is fetched before the first
        try (verdicts.FirstQuestions): no try run only to learn it; when the engine answers it
        with the bytes a kept verdict was decided on (verdicts.AnsweredVerdicts), that verdict
        is the decision."""
        pure = self.pure.get(state, request) if self.pure is not None else None
        if pure is not None:
            return self.record_verdict(request, state, caller, body, pure)
        answers: dict[str, tuple[int, object] | Exception] = {}
        fetched = {} if fetched is None else fetched
        questions = self.questions
        first = questions.get(state, request) if questions is not None else None
        if first is not None:
            answer = await self.fetch_answer(state, first, answers, fetched, parse=False)
            again = self.answered.given(state, request, first, answer) if self.answered is not None else None
            if again is not None:
                return self.record_verdict(request, state, caller, body, again)
            self.take_answer(first, answer, answers)
        for _ in range(FETCHES_ON_LOOP + 1):
            engine = EngineNotAsked(answers, self.images)
            verdict = self.verdict_for(request, state, engine)
            if not engine.asked:
                self.keep_verdict(state, request, verdict, answers, fetched)
                return self.record_verdict(request, state, caller, body, verdict)
            if engine.missing is None or len(answers) == FETCHES_ON_LOOP:
                return None
            if questions is not None and not answers:
                questions.keep(state, request, engine.missing)
            await self.fetch_answer(state, engine.missing, answers, fetched)
        return None

    def keep_verdict(self, state: PolicyState, request: ApiRequest, verdict: ApiVerdict,
                     answers: dict[str, tuple[int, object] | Exception],
                     fetched: dict[str, EngineAnswer]) -> None:
        """A verdict to give again: one that asked the engine nothing (verdicts.PureVerdicts) or
        one question the engine answered (verdicts.AnsweredVerdicts, with that answer)."""
        if self.pure is not None and not answers:
            self.pure.keep(state, request, verdict)
        elif self.answered is not None and len(answers) == 1:
            (question,) = answers
            answer = fetched.get(question)  # (none when the engine's answer was an error)
            if answer is not None:
                self.answered.keep(state, request, question, answer, verdict)

    async def fetch_answer(self, state: PolicyState, target: str,
                           answers: dict[str, tuple[int, object] | Exception],
                           fetched: dict[str, EngineAnswer], parse: bool = True) -> EngineAnswer | Exception:
        """The engine's answer to a decision's GET, on the loop (fetch_pooled), into `fetched` as
        given (an error aside), and (`parse`) into `answers` as the decision reads it."""
        answer = await fetch_pooled(self.pool, state.settings.upstream, target, loop=self.loop)
        if not isinstance(answer, Exception):
            fetched[target] = answer
        if parse:
            self.take_answer(target, answer, answers)
        return answer

    def take_answer(self, target: str, answer: EngineAnswer | Exception,
                    answers: dict[str, tuple[int, object] | Exception]) -> None:
        """The answer parsed into `answers` (an image's labels remembered)."""
        answers[target] = value = parsed(answer)
        if not isinstance(value, Exception):
            self.images.learn(target, *value)

    def decide_and_record(self, request: ApiRequest, state: PolicyState, caller: Caller,
                          body: dict[str, object]) -> ApiVerdict:
        verdict = self.verdict_for(request, state, UpstreamEngine(state.settings.upstream))
        return self.record_verdict(request, state, caller, body, verdict)

    def record_verdict(self, request: ApiRequest, state: PolicyState, caller: Caller,
                       body: dict[str, object], verdict: ApiVerdict) -> ApiVerdict:
        if verdict.allowed and state.policy is not None:
            try:  # [budgets] spent once per allowed request, before its record says "allow"
                self.budgets.charge(state.policy, request.profile, verdict.endpoint)
            except Denied as over:
                verdict = refused_after(verdict, ApiVerdict(False, over.rule, over.message, verdict.endpoint))
        record = api_record(caller, request.profile or None, request.method, request.target,
                            endpoint=verdict.endpoint, allowed=verdict.allowed, rule=verdict.rule,
                            reason=verdict.reason, policy=state.policy)
        record.update(body)
        if verdict.allowed and verdict.target is not None and verdict.target != request.target:
            record["forwarded"] = verdict.target  # names resolved to IDs, the query as checked
        if verdict.allowed and verdict.afterwards is not None:
            record["steps"] = [list(verdict.afterwards)]  # as the CLI layer's record lists its steps
        if state.policy is None:
            syslog_only(record)
            return verdict
        try:
            self.record(state.policy, record)
        except AuditFull as full:  # counted, summed up (to syslog while the log is full)
            self.floods.count(caller.uid, full.rule, request_rate.asked(request.method, request.path))
            return refused_after(verdict, ApiVerdict(False, full.rule, full.message, verdict.endpoint,
                                                     status=intake.FULL))
        except AuditError as error:
            reason = f"{error.message}; nothing runs unrecorded"
            return refused_after(verdict, ApiVerdict(False, error.rule, reason, verdict.endpoint))
        return verdict

    def verdict_for(self, request: ApiRequest, state: PolicyState, engine: EngineQueries) -> ApiVerdict:
        if state.policy is None:
            return ApiVerdict(False, "policy-invalid", f"{state.error}; ask the operator to fix the policy",
                              "unknown")
        if not request.profile:
            return ApiVerdict(False, RULE_USER, f"uid {request.uid} is not listed in [proxy.users]",
                              "unknown")
        try:
            return self.decide(request, state.policy, engine)
        except Exception as error:  # noqa: BLE001 - any failure to decide is a denial
            if not isinstance(engine, EngineNotAsked):
                report(error)
            return ApiVerdict(False, "internal-error", f"internal error ({type(error).__name__})", "unknown")

    def record_refusal(self, state: PolicyState, caller: Caller, method: str, target: str,
                       error: FramingError) -> None:
        """A framing refusal is a decision too: recorded like the others (best effort), one by one
        up to a rate per uid, then summed up (a caller looping bad requests cannot drown the log)."""
        self.write_summaries(state)
        if not self.floods.admit(caller.uid, error.rule, REFUSAL_RECORDS_PER_MINUTE):
            return
        record = api_record(caller, None, method, target, endpoint="framing", allowed=False,
                            rule=error.rule, reason=error.message, policy=state.policy)
        self.write_best_effort(state, record)


Handle = Callable[[ClientStream, ClientStream], Any]  # Proxy.handle, or a test's wrapper of it


async def serve_clients(proxy: Proxy, sock: socket.socket,
                        handle: Handle | None = None) -> asyncio.AbstractServer:
    """The listening socket served: each connection a ClientStream (reader and writer in one
    protocol, no asyncio streams) running `handle` (Proxy.handle, or a test's wrapper of it)."""
    loop = asyncio.get_running_loop()
    serve = handle or proxy.handle
    return await loop.create_unix_server(lambda: ClientStream(serve, READ_SIZE), sock=sock)


class ClientConnection:
    """One client connection: requests in turn, each read, decided and answered in full."""

    def __init__(self, proxy: Proxy, reader: ClientStream, writer: ClientStream,
                 caller: Caller, loop: asyncio.AbstractEventLoop) -> None:
        self.proxy = proxy
        self.loop = loop  # the connection's event loop, asked once (Proxy.handle)
        self.reader = reader
        self.writer = writer
        self.caller = caller
        self.pending = b""  # bytes read past the current request (a pipelined next one)
        self.request_line = ("", "")  # method and target, once parsed (for the audit record)
        self.spooled = 0  # bytes of the current build context counted in proxy.spools
        self.deadline: float | None = None  # loop time by which the current phase must be read
        self.timer: asyncio.TimerHandle | None = None  # the phase's deadline, armed at its first wait
        self.expired = False  # the current phase's deadline has passed
        self.waiting: asyncio.Task[Any] | None = None  # this connection's task, while it waits for bytes
        self.phase = "idle"  # "idle" (between requests), "head" or "body"; streams have no deadline
        self.held: asyncio.Lock | None = None  # the profile's lock for a serialised request

    async def serve(self) -> None:
        while True:
            state = self.proxy.state
            try:
                received = await self.read_request(state)
            except FramingError as error:
                await self.refuse(state, error)
                return
            except ClientIdle:
                return  # kept alive but unused past [proxy] idle_timeout: closed quietly
            finally:
                self.end_phase()  # from here on (decision, relay, streams) no read deadline
            if received is None:
                return
            try:
                keep = await self.answer(received, state)
            finally:
                if received.spool is not None:
                    received.spool.close()
                self.release_spool()
            if not keep:
                return

    # ------------------------------------------------------------ reading a request

    async def read_request(self, state: PolicyState) -> Received | None:
        self.request_line = ("", "")
        reader = RequestReader(self.pending)
        self.pending = b""
        settings = state.settings
        self.start_phase("head" if reader.buffer else "idle", settings)
        try:
            while (event := reader.head()) is None:
                data = await self.receive()
                if not data:
                    if reader.buffer:
                        raise FramingError(400, "malformed request: the client hung up within its head")
                    return None  # hung up between requests
                reader.add(data)
        finally:
            self.request_line = reader.request_line
        framing.check_raw_head(reader.head_bytes)
        target = framing.split_target(event.target)
        framing.check_head(event, target.path)
        length = framing.body_length(event)
        build = target.path in framing.CHUNKED_PATHS and event.method == b"POST"
        cap = state.settings.max_build_context if build else state.settings.max_body
        framing.check_body_size(length, cap)
        if b"expect" in event.fields:  # (check_head let only 100-continue by)
            self.writer.write(wire.response_head(100, b"Continue", []))
        self.start_phase("body", settings)
        if build:
            spool, size = await self.spool_body(reader, cap, settings)
            return Received(event, target, b"", spool, size, bytes(reader.buffer))
        while (body := reader.body(length or 0)) is None:  # (only a build's body comes chunked)
            reader.add(await self.receive_body())
        return Received(event, target, body, None, len(body), bytes(reader.buffer))

    def start_phase(self, phase: str, settings: ProxySettings) -> None:
        """The deadline of reading the next part of a request: a slow or silent client is cut
        off ([proxy] idle_timeout between requests, header_timeout for a head from its first
        byte, body_timeout for a body); 0 means none."""
        if phase == "idle":
            seconds = settings.idle_timeout
        else:
            seconds = settings.header_timeout if phase == "head" else settings.body_timeout
        self.end_phase()
        self.phase = phase
        self.deadline = self.loop.time() + seconds if seconds else None

    def end_phase(self) -> None:
        self.deadline = None
        self.expired = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def expire(self) -> None:
        """The phase's deadline: a read waiting for it is cancelled (receive says why)."""
        self.expired = True
        if self.waiting is not None:
            self.waiting.cancel()

    async def receive(self) -> bytes:
        """The next bytes of a request, within the current phase's deadline: one timer per
        phase, armed when the phase first waits (a head or body that came with the read before
        arms none), instead of a timeout scope around every read."""
        if self.deadline is None:
            data = await self.reader.read(READ_SIZE)
        else:
            if self.timer is None:
                self.timer = self.loop.call_at(self.deadline, self.expire)
            if self.expired:
                raise self.too_slow()
            task = self.waiting = asyncio.current_task(self.loop)
            try:
                data = await self.reader.read(READ_SIZE)
            except asyncio.CancelledError:
                if self.expired and task is not None and task.uncancel() == 0:  # ours, not a shutdown's
                    raise self.too_slow() from None
                raise
            finally:
                self.waiting = None
        if self.phase == "idle" and data:
            self.start_phase("head", self.proxy.state.settings)
        return data

    def too_slow(self) -> Exception:
        if self.phase == "idle":
            return ClientIdle()
        key = "header_timeout" if self.phase == "head" else "body_timeout"
        # Stops: slowloris, a client holding a connection (and a spool) open by sending
        # its request a byte at a time, or never finishing it.
        return FramingError(408, f"the request's {self.phase} was not received in time ([proxy] "
                            f"{key}); send requests whole", guards.RULE_SLOW)

    def release_spool(self) -> None:
        if self.spooled:
            self.proxy.spools.give_back(self.caller.uid, self.spooled)
            self.spooled = 0

    async def receive_body(self) -> bytes:
        data = await self.receive()
        if not data:
            raise FramingError(400, "request body cut short")
        return data

    async def spool_body(self, reader: RequestReader, cap: int,
                         settings: ProxySettings) -> tuple[IO[bytes], int]:
        """A build context (chunked), read in full before anything goes upstream: to an unlinked
        0600 file, within the cap and within what the caller may hold of the spool at once
        (guards.SpoolLedger); forwarded later with a Content-Length."""
        spool = tempfile.TemporaryFile(prefix="gatekeeper-proxy-")  # noqa: SIM115 - closed by serve()
        size = 0
        try:
            while True:
                data = reader.chunked()
                size += len(data)
                if size > cap:
                    raise FramingError(413, f"build context over the cap of {cap} bytes",
                                       framing.RULE_BODY_SIZE)
                if data:
                    self.spool_piece(spool, data, settings)
                if reader.chunked_done:
                    break
                reader.add(await self.receive_body())
        except BaseException:
            spool.close()
            self.release_spool()
            raise
        spool.flush()
        return spool, size

    def spool_piece(self, spool: IO[bytes], data: bytes, settings: ProxySettings) -> None:
        why = self.proxy.spools.take(self.caller.uid, len(data), settings.max_spool_per_user,
                                     settings.max_spool)
        if why is not None:
            # Stops: concurrent builds, each under the cap, filling the spool's disk together.
            raise FramingError(429, why, guards.RULE_SPOOL)
        self.spooled += len(data)
        spool.write(data)

    async def refuse(self, state: PolicyState, error: FramingError) -> None:
        """Answer a framing refusal and close: the rest of the stream cannot be trusted."""
        loop = self.loop
        method, target = self.request_line
        await loop.run_in_executor(None, self.proxy.record_refusal, state, self.caller, method, target, error)
        status = error.status if 400 <= error.status < 600 else 400
        body = denial_body(error.message, error.rule)
        await self.send_whole(status, body, False)
        await self.linger()

    async def refuse_connection(self, state: PolicyState) -> None:
        """A connection over [proxy] max_connections_per_user: answered and closed unread."""
        cap = state.settings.max_connections_per_user
        # Stops: one caller holding every descriptor (and engine connection) the proxy has.
        error = FramingError(429, f"uid {self.caller.uid} already has {cap} connections open to the proxy "
                             "([proxy] max_connections_per_user); close some", guards.RULE_CONNECTIONS)
        await self.refuse(state, error)

    async def linger(self) -> None:
        """Close gently after a refusal: closing with unread bytes sends a reset, which can
        destroy the answer before the client reads it. Read and drop what is in flight (a
        bounded amount, for a short time) after our half-close."""
        if self.writer.can_write_eof():
            self.writer.write_eof()
        dropped = 0
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while dropped < LINGER_BYTES and (data := await self.reader.read(READ_SIZE)):
                    dropped += len(data)
        except (TimeoutError, ConnectionError):
            pass

    # ------------------------------------------------------------ answering it

    async def answer(self, received: Received, state: PolicyState) -> bool:
        """Decide, then answer or forward; True to keep the connection for another request."""
        self.pending = received.after  # what came after it: a next request, or raw stream
        request = self.api_request(received, state)
        keep = not framing.wants_close(received.event)
        settings = state.settings
        handed = intake.is_intake(request)  # the ForceCommand's audit records: ours, never the engine's
        cost = request_rate.cost(request.target, request.body if handed else b"")
        wait = self.proxy.rates.take(self.caller.uid, settings.request_rate, settings.request_burst, cost)
        if wait:
            await self.over_rate(request, settings, wait, keep)
            return keep
        if handed:
            status, body = await self.take_intake(request, state, received.size)
            await self.send_whole(status, body, keep)
            return keep
        try:
            self.held = await self.serialised(request)
        except Denied as busy:
            record = api_record(self.caller, request.profile, request.method, request.target,
                                endpoint="serialised", allowed=False, rule=busy.rule, reason=busy.message,
                                policy=state.policy)
            loop = self.loop
            await loop.run_in_executor(None, self.proxy.write_best_effort, state, record)
            await self.send_whole(503, denial_body(busy.message, busy.rule), keep)
            return keep
        try:
            return await self.decide_and_forward(received, request, state, keep)
        finally:
            self.engine_answered()

    async def over_rate(self, request: ApiRequest, settings: ProxySettings, wait: float, keep: bool) -> None:
        """A request past the caller's [proxy] request_rate: refused before anything else (no
        decision, no record of its own), counted into one summary record per uid and minute."""
        uid = self.caller.uid
        self.proxy.floods.count(uid, request_rate.RULE_REQUEST_RATE, request_rate.asked(request.method,
                                                                                          request.path))
        # Stops: a shell as the agent looping requests (a ping, a GET, an intake record) on the
        # socket, each an audit record, until the log's disk is full.
        reason = request_rate.refusal(uid, settings.request_rate, settings.request_burst, wait)
        fields = [(b"content-type", b"application/json"), (b"retry-after", b"%d" % math.ceil(wait))]
        await self.send_whole(429, denial_body(reason, request_rate.RULE_REQUEST_RATE), keep, fields)

    async def take_intake(self, request: ApiRequest, state: PolicyState, size: int) -> tuple[int, bytes]:
        """A record handed over, written unless its uid is over [proxy] intake_per_minute: then
        refused (the ForceCommand runs nothing) and counted into one summary record."""
        loop = self.loop
        if self.proxy.floods.summaries_due():  # else no thread hop for nothing (the sweeper writes them too)
            await loop.run_in_executor(None, self.proxy.write_summaries, state)
        if not self.proxy.floods.admit(self.caller.uid, INTAKE_KIND, state.settings.intake_per_minute, size):
            # Stops: the agent's account drowning the log (or filling its disk) with records.
            message = (f"gatekeeper: audit intake: uid {self.caller.uid} is over [proxy] intake_per_minute "
                       f"({state.settings.intake_per_minute}); this record is refused and counted")
            return 429, json.dumps({"message": message}).encode()
        # Written here on the loop: the ForceCommand waits for this answer twice per command
        # (before docker runs and after), and a hop to a thread and back cost it ~0.5 ms each
        # time. A record is a bounded local append (<= 64 KiB); only a lock held by another
        # writer would make the loop wait, and then a thread waits instead.
        shares = self.proxy.shares
        try:
            status, body = take_record(request, state, wait=False, shares=shares, log=self.proxy.log,
                                       name_of=self.proxy.user_names.name)
        except LogBusy:
            waiting = partial(take_record, request, state, shares=shares)
            status, body = await loop.run_in_executor(None, waiting)
        if status == intake.FULL:  # not written: counted, summed up (to syslog while the log is full)
            # (the log at its ceiling, or this uid's records at their share: the answer names which)
            rule = AuditShareFull.rule if f"(rule {AuditShareFull.rule})".encode() in body else AuditFull.rule
            self.proxy.floods.count(self.caller.uid, rule, request_rate.asked(request.method, request.path))
        return status, body

    async def serialised(self, request: ApiRequest) -> asyncio.Lock | None:
        """The profile's lock, held, for a request that creates or starts (guards.SERIALISED)."""
        if not request.profile or request.method not in SERIALISED_METHODS:
            return None  # a GET or HEAD (most requests) is never one: no route lookup for it
        try:
            route, _ = find_route(request.method, request.path)
        except Denied:
            return None
        if route.ident not in guards.SERIALISED:
            return None
        return await self.proxy.locks.acquire(request.profile)

    def engine_answered(self) -> None:
        """The engine answered (or will not): the next serialised request may be decided."""
        held, self.held = self.held, None
        if held is not None:
            held.release()

    async def decide_and_forward(self, received: Received, request: ApiRequest, state: PolicyState,
                                 keep: bool) -> bool:
        loop = self.loop
        facts = body_facts(received)
        fetched: dict[str, EngineAnswer] = {}
        verdict = await self.proxy.decide_on_loop(request, state, self.caller, facts, fetched)
        if verdict is None:
            verdict = await loop.run_in_executor(None, self.proxy.decide_and_record, request, state,
                                                 self.caller, facts)
        if not verdict.allowed:
            if verdict.starts is not None:
                await self.settle_refused_start(verdict, verdict.starts, state)
            if verdict.made_volumes:
                await self.remove_made_volumes(verdict, state)
            body = denial_body(verdict.reason, verdict.rule)
            await self.send_whole(verdict.status, body, keep)
            return keep
        if pings.is_ping(request.method, request.path) and not framing.is_upgrade(received.event):
            # (decided and recorded like any request; an Upgrade asked of a ping goes to the engine)
            remembered = self.proxy.pings.fresh(state.settings.upstream, request.method,
                                                verdict.target or request.target)
            if remembered is not None:
                await self.send_ping(remembered, keep)
                return keep
        known = fetched.get(verdict.answered_by) if verdict.answered_by is not None else None
        if known is not None and known.status == 200 and verdict.response is not None:
            # The decision's question was this very GET (same object, same API version): its
            # answer, the object the decision judged, is sent redacted without asking again.
            return await self.send_transformed(verdict.response, request, known.status, known.headers,
                                               known.body, keep)
        upstream = Upstream(self, received, request, verdict, state)
        return await upstream.forward(keep)

    async def settle_refused_start(self, verdict: ApiVerdict, ident: str, state: PolicyState) -> None:
        """A start refused after its decision (its record could not be written: nothing runs
        unrecorded) settles its container as a start the decision refused (vet.never_started_fate):
        a never-started --rm one is removed (`docker run --rm` waits for that and hung before),
        another is named. Unrecorded in the log like the refusal itself: syslog gets a line."""
        from gatekeeper.proxy.vet import never_started_fate

        loop = self.loop
        engine = UpstreamEngine(state.settings.upstream)
        try:
            what = await loop.run_in_executor(None, never_started_fate, engine, ident)
        except Exception as error:  # noqa: BLE001 - the start stays refused; the container as it was
            report(error)
            return
        if what is not None:
            verdict.reason = f"{verdict.reason}; {what}"
            warn(f"proxy: a start by uid {self.caller.uid} refused unrecorded ({verdict.rule}): {what}")

    async def remove_made_volumes(self, verdict: ApiVerdict, state: PolicyState) -> None:
        """A create refused after its decision ([budgets] containers_per_hour, the audit write)
        removes the volumes the decision made for it (proxy.leftovers.removed_volumes)."""
        from gatekeeper.proxy.leftovers import removed_volumes

        loop = self.loop
        engine = UpstreamEngine(state.settings.upstream)
        try:
            what = await loop.run_in_executor(None, removed_volumes, engine, verdict.made_volumes)
        except Exception as error:  # noqa: BLE001 - the create stays refused; the volumes as they are
            report(error)
            return
        if what is not None:
            verdict.reason = f"{verdict.reason}; {what}"
            warn(f"proxy: a create by uid {self.caller.uid} refused after its decision ({verdict.rule}): "
                 f"{what}")

    async def send_transformed(self, name: str, request: ApiRequest, status: int,
                               headers: list[tuple[bytes, bytes]], body: bytes, keep: bool) -> bool:
        """What transform_response (`name`) makes of an engine answer read whole, with the
        engine's end-to-end fields; an answer that cannot be transformed is not sent."""
        loop = self.loop
        transform = self.proxy.transform
        try:
            if len(body) <= TRANSFORM_ON_LOOP:  # an inspect object: redacted faster than a thread wakes up
                out = transform(name, status, body, request)
            else:
                out = await loop.run_in_executor(None, transform, name, status, body, request)
        except Exception as error:  # noqa: BLE001 - an answer we cannot redact is not sent
            report(error)
            reason = f"the answer could not be redacted ({type(error).__name__})"
            await self.send_whole(502, denial_body(reason, "internal-error"), keep)
            return keep
        fields = [(k, v) for k, v in end_to_end(headers)
                  if k not in (b"content-length", b"transfer-encoding")]
        await self.send_whole(status, out, keep, fields)
        return keep

    async def send_ping(self, known: pings.PingAnswer, keep: bool) -> None:
        """The engine's remembered answer to this ping, framed as Upstream.relay_small relays it."""
        headers = pings.with_date(known.headers)
        if not keep:
            headers.append((b"connection", b"close"))
        self.writer.write(wire.response_head(known.status, known.reason, headers) + known.body)
        await self.writer.drain()

    def api_request(self, received: Received, state: PolicyState) -> ApiRequest:
        event = received.event
        headers = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in event.headers]
        profile = state.settings.profile_of(self.caller.user) or ""
        target = received.target
        return ApiRequest(event.method.decode("ascii"), event.target.decode("ascii"), target.path,
                          target.version, target.query, headers, received.body, self.caller.uid, profile,
                          received.spool)

    async def send_whole(self, status: int, body: bytes, keep: bool,
                         headers: list[tuple[bytes, bytes]] | None = None) -> None:
        fields = [(b"content-type", b"application/json")] if headers is None else list(headers)
        fields.append((b"content-length", b"%d" % len(body)))
        if not keep:
            fields.append((b"connection", b"close"))
        head = wire.response_head(status, REASONS.get(status, b""), fields)
        # An answer to HEAD has the headers of the GET answer and never its body.
        self.writer.write(head if self.request_line[0] == "HEAD" else head + body)
        await self.writer.drain()

    async def watch_client(self) -> None:
        """While a response streams: keep what the client sends (a next request) and return
        when it hangs up, so a `logs -f` the client left stops upstream too."""
        while len(self.pending) < MAX_HEAD:
            data = await self.reader.read(READ_SIZE)
            if not data:
                return
            self.pending += data
        await asyncio.Event().wait()  # enough buffered: the rest waits in the socket


class Upstream:
    """One allowed request forwarded on its own engine connection (or a pooled one for a
    small answer), and its response relayed. The engine's side is gatekeeper.proxy.wire:
    the answer's head and, where its end must be found, its body parsed by httptools."""

    def __init__(self, client: ClientConnection, received: Received, request: ApiRequest,
                 verdict: ApiVerdict, state: PolicyState) -> None:
        self.client = client
        self.received = received
        self.request = request
        self.verdict = verdict
        self.state = state
        self.answer: wire.ResponseReader  # a new one for each try (try_head)
        self.buffer = bytearray()  # read from the engine past what was parsed so far
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def forward(self, keep: bool) -> bool:
        """Send the request, relay the answer; a pooled connection when the answer is small."""
        upstream = self.state.settings.upstream
        pooled = framing.small_answer(self.received.event.method, self.received.target.path)
        connection = self.client.proxy.pool.take(upstream) if pooled else None
        response: wire.EngineHead | None = None
        if connection is not None:
            self.reader, self.writer = connection
            response = await self.try_head(pooled)  # None: the engine closed it while idle
            if response is None:
                self.writer.close()
        if response is None:
            try:
                self.reader, self.writer = await asyncio.open_unix_connection(upstream, limit=READ_SIZE)
            except OSError as error:
                await self.engine_unreachable(error, keep)
                return keep
            self.writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
            response = await self.try_head(pooled)
        self.client.engine_answered()  # what was forwarded took effect: a serialised create may follow
        if response is None:
            self.writer.close()
            await self.engine_unreachable(OSError("no answer"), False)
            return False
        return await self.relay(response, keep, pooled, upstream)

    async def try_head(self, keep_alive: bool) -> wire.EngineHead | None:
        self.answer = wire.ResponseReader(bodiless=self.received.event.method == b"HEAD")
        self.buffer = bytearray()
        try:
            await self.send_request(keep_alive)
            return await self.response_head()
        except (OSError, wire.EngineProtocolError, asyncio.IncompleteReadError):
            return None

    async def engine_unreachable(self, error: OSError, keep: bool) -> None:
        self.client.proxy.pings.forget()  # no ping is answered for an engine that does not answer
        message = f"gatekeeper: the engine does not answer ({error.strerror or error}) (rule {RULE_UPSTREAM})"
        await self.client.send_whole(502, json.dumps({"message": message}).encode(), keep)

    async def relay(self, response: wire.EngineHead, keep: bool, pooled: bool, upstream: str) -> bool:
        reusable = False
        ping = self.ping_key()
        if ping is not None:  # the engine's word stands: learned anew below if it is one to give again
            self.client.proxy.pings.answers.pop(ping, None)
        try:
            if response.status == 101:
                await self.relay_upgrade(response)
                return False
            if self.verdict.response is not None:
                keep = await self.relay_transformed(response, keep)
            elif pooled and (response.length is not None or response.chunked or self.answer.complete):
                keep = await self.relay_small(response, keep)
            else:
                return await self.relay_streaming(response, keep)
            reusable = pooled and self.answer.complete and not self.buffer
            return keep
        finally:
            if reusable:
                self.client.proxy.pool.give(upstream, self.reader, self.writer)
            else:
                self.writer.close()

    # ------------------------------------------------------------ request

    async def send_request(self, keep_alive: bool) -> None:
        received, verdict = self.received, self.verdict
        body = verdict.body if verdict.body is not None else received.body
        size = len(body) if verdict.body is not None or received.spool is None else received.size
        upgrade = framing.is_upgrade(received.event)
        headers = framing.forwarded_headers(received.event, size, upgrade, keep_alive)
        target = (verdict.target or self.request.target).encode("ascii")
        head = wire.request_head(received.event.method, target, headers)
        if verdict.body is None and received.spool is not None:
            self.writer.write(head)
            await self.send_spooled(received.spool)
        else:
            self.writer.write(head + body if body else head)  # one write: one wake-up of the engine
        await self.writer.drain()

    async def send_spooled(self, spool: IO[bytes]) -> None:
        spool.seek(0)
        while data := spool.read(READ_SIZE):
            self.writer.write(data)
            await self.writer.drain()

    async def response_head(self) -> wire.EngineHead:
        """The engine's response head (a 101 when it takes an upgrade); other 1xx are skipped."""
        while True:
            head = wire.split_head(self.buffer)
            if head is None:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    raise wire.EngineProtocolError("no response from the engine")
                self.buffer += data
                continue
            response = self.answer.head(head)
            if 100 <= response.status < 200 and response.status != 101:
                self.answer = wire.ResponseReader(bodiless=self.answer.bodiless)
                continue
            return response

    def head_for_client(self, response: wire.EngineHead, keep: bool,
                        extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
        headers = end_to_end(response.headers)
        headers.extend(extra)
        if not keep:
            headers.append((b"connection", b"close"))
        return wire.response_head(response.status, response.reason, headers)

    # ------------------------------------------------------------ small answer (pooled)

    async def relay_small(self, response: wire.EngineHead, keep: bool) -> bool:
        """A small answer on a keep-alive connection: its head, then its body framed as the
        engine framed it (Content-Length or chunked) while httptools finds its end (to reuse
        the connection), never a byte past it; in one write when it came at once."""
        out = self.client.writer
        first, self.buffer = bytes(self.buffer), bytearray()
        body = [self.answer.framed(first)]
        pending = self.head_for_client(response, keep) + body[0]
        while not self.answer.complete:
            out.write(pending)
            data = await self.reader.read(READ_SIZE)
            if not data:
                await out.drain()
                return False  # cut short: the client must not wait for the rest
            pending = self.answer.framed(data)
            body.append(pending)
        out.write(pending)
        await out.drain()
        if self.answer.excess:
            self.buffer = bytearray(b"?")  # more than one answer came: never reused
            return keep
        ping = self.ping_key()
        if ping is not None and not response.chunked:
            headers = end_to_end(response.headers)
            self.client.proxy.pings.learn(*ping, response.status, response.reason, headers, b"".join(body))
        return keep

    def ping_key(self) -> tuple[str, str, str] | None:
        """(upstream, method, target as forwarded) when this request is a ping, else None."""
        request = self.request
        if not pings.is_ping(request.method, request.path):
            return None
        return self.state.settings.upstream, request.method, self.verdict.target or request.target

    # ------------------------------------------------------------ streamed response

    async def relay_streaming(self, response: wire.EngineHead, keep: bool) -> bool:
        """The head parsed, the body as raw reads as it comes: nothing buffered whole."""
        client = self.client
        first, self.buffer = bytes(self.buffer), bytearray()
        body = self.body_relay(response, first, keep)
        if body is None:
            client.writer.write(self.head_for_client(response, keep))
            await client.writer.drain()
            return keep
        complete = await self.while_client_listens(body)
        await self.take_afterwards(response.status, complete, b"")  # when not taken already
        return keep and complete

    def body_relay(self, response: wire.EngineHead, first: bytes, keep: bool):  # type: ignore[no-untyped-def]  # a coroutine|None
        """The coroutine relaying this response's head and body, None when it has no body."""
        if self.answer.bodiless:
            return None
        if response.chunked:
            stepped = self.verdict.afterwards is not None and response.status == 200
            copy = self.copy_chunked_stepped if stepped else self.copy_chunked
            return copy(self.head_for_client(response, keep), first)
        if response.length is not None:
            return self.copy_exact(self.head_for_client(response, keep), first, response.length)
        head = self.head_for_client(response, keep, ((b"transfer-encoding", b"chunked"),))
        return self.copy_until_close(head, first)

    async def while_client_listens(self, body) -> bool:  # type: ignore[no-untyped-def]  # body: a relay coroutine
        relay = asyncio.ensure_future(body)
        watcher = asyncio.ensure_future(self.client.watch_client())
        done, _ = await asyncio.wait({relay, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if relay not in done:
            await cancelled(relay)
            return False
        await cancelled(watcher)  # its read must be over before the next request is read
        return bool(relay.result())

    async def copy_exact(self, head: bytes, first: bytes, length: int) -> bool:
        out = self.client.writer
        out.write(head + first[:length])  # the head and what came with it: one write
        left = length - len(first[:length])
        reads = Batched(self.reader, self.writer.transport)
        while left > 0:
            data = await reads.read(min(left, READ_SIZE))
            if not data:
                return False  # cut short: the client must not wait for the rest
            out.write(data)
            left -= len(data)
            await out.drain()
        await out.drain()
        return True

    async def copy_chunked(self, head: bytes, first: bytes) -> bool:
        """The engine's chunked framing relayed as it is, to the end of the engine's
        response (Connection: close); complete only if its body ended with the last chunk
        (the tail is the body's: a head whose last header value ends in 0 is no last chunk)."""
        out = self.client.writer
        out.write(head + first)
        tail = first[-len(CHUNKED_END):]
        reads = Batched(self.reader, self.writer.transport)
        while data := await reads.read(READ_SIZE):
            out.write(data)
            tail = (tail + data[-len(CHUNKED_END):])[-len(CHUNKED_END):]
            await out.drain()
        await out.drain()
        return tail == CHUNKED_END

    async def copy_chunked_stepped(self, head: bytes, first: bytes) -> bool:
        """copy_chunked for an answer with a step to take after it (a pull to record): relayed
        as it comes but for its last-chunk marker; when the engine's answer has ended, the step
        is taken (its warning, if any, sent as one more progress message) and only then the
        end, so that a `docker rmi` right after the pull finds the record."""
        out = self.client.writer
        out.write(head)
        held, tail = b"", b""
        reads = Batched(self.reader, self.writer.transport)
        data = first or await reads.read(READ_SIZE)  # the head may have come alone
        while data:
            tail = (tail + data[-pulls.TAIL:])[-pulls.TAIL:]
            held += data
            out.write(held[:-len(CHUNKED_END)])
            held = held[-len(CHUNKED_END):]
            await out.drain()
            data = await reads.read(READ_SIZE)
        complete = held == CHUNKED_END
        warning = await self.take_afterwards(200, complete, tail)
        if warning is not None:
            message = json.dumps({"status": f"gatekeeper: warning: {warning}"}).encode() + b"\r\n"
            out.write(b"%x\r\n%s\r\n" % (len(message), message))
        out.write(held)
        await out.drain()
        return complete

    async def take_afterwards(self, status: int, complete: bool, tail: bytes) -> str | None:
        """The verdict's step (gatekeeper.proxy.pulls), once, after an answer 200 that came
        whole (a pull's: one that succeeded); its warning, also to syslog."""
        step, self.verdict.afterwards = self.verdict.afterwards, None
        if step is None or status != 200 or not complete:
            return None
        if step[0] == "pull-record" and not pulls.pull_succeeded(tail):
            return None
        if step[0] == "build-record":
            from gatekeeper.build_records import built_image

            # the image the build's own answer names, if it succeeded
            ident = built_image(tail, quiet=step[1:] == ("quiet",))
            if ident is None:
                return None
            step = ("build-record", ident)
        loop = self.client.loop
        engine = UpstreamEngine(self.state.settings.upstream)
        warning = await loop.run_in_executor(None, pulls.take_step, engine, self.request.profile, step)
        if warning is not None:
            warn(f"proxy step for {self.request.profile!r}: {warning}")
        return warning

    async def copy_until_close(self, head: bytes, first: bytes) -> bool:
        """A body delimited by the engine closing: chunked to the client by us."""
        out = self.client.writer
        out.write(head + wire.chunk(first))
        await out.drain()
        reads = Batched(self.reader, self.writer.transport)
        while data := await reads.read(READ_SIZE):
            out.write(wire.chunk(data))
            await out.drain()
        out.write(wire.LAST_CHUNK)
        await out.drain()
        return True

    # ------------------------------------------------------------ transformed response

    async def relay_transformed(self, response: wire.EngineHead, keep: bool) -> bool:
        """Read the (small) answer whole and send what transform_response makes of it."""
        parts: list[bytes] = []
        size = 0
        data, self.buffer = bytes(self.buffer), bytearray()
        delimited = response.length is not None or response.chunked or self.answer.complete
        while True:
            piece = self.answer.body(data) if delimited else data
            size += len(piece)
            if size > MAX_TRANSFORMED:
                return await self.transform_failed("the engine's answer is too large to redact", keep)
            parts.append(piece)
            if delimited and self.answer.complete:
                break
            data = await self.reader.read(READ_SIZE)
            if not data:
                if delimited:
                    return await self.transform_failed("the engine's answer was cut short", keep)
                break  # delimited by the engine closing: that was all of it
        if self.answer.excess:
            self.buffer = bytearray(b"?")  # more than one answer came: never reused
        return await self.client.send_transformed(self.verdict.response or "", self.request, response.status,
                                                  response.headers, b"".join(parts), keep)

    async def transform_failed(self, reason: str, keep: bool) -> bool:
        self.buffer = bytearray(b"?")  # the rest of that answer may still come: never reused
        await self.client.send_whole(502, denial_body(reason, "internal-error"), keep)
        return keep

    # ------------------------------------------------------------ upgrade

    async def relay_upgrade(self, response: wire.EngineHead) -> None:
        """101 from the engine: from here on both directions are raw bytes (attach's stream,
        buildkit's h2c), relayed until both sides have finished."""
        if not framing.is_upgrade(self.received.event):
            raise wire.EngineProtocolError("the engine switched protocols unasked")
        client = self.client
        client.writer.write(wire.response_head(101, response.reason, response.headers))
        from_client = client.pending
        client.pending = b""
        first, self.buffer = bytes(self.buffer), bytearray()
        await asyncio.gather(
            pipe(from_client, client.reader, self.writer),
            pipe(first, self.reader, client.writer),
            return_exceptions=True,
        )


# ---------------------------------------------------------------- helpers


class Batched:
    """Reads of a streamed response body, fewer and larger while it comes fast in small
    pieces: dockerd writes `docker logs` a line at a time, and the proxy, reading each piece
    as it lands, paid a loop turn, a task switch and a send per 100-byte line (30,000 reads
    for 100 MB of logs, a third of a CPU). When a read returned a small piece without having
    to wait long for it, reading from the engine pauses for BATCH_WAIT, so that what comes
    meanwhile gathers in the socket and the next read takes it at once. A slow stream (a
    `logs -f` line now and then, events) is not delayed: its reads wait for their data, and
    only a read that did not wait makes the next one wait."""

    __slots__ = ("reader", "transport", "hurry")

    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        self.reader = reader
        self.transport = transport  # the engine connection's, which feeds `reader`
        self.hurry = False  # the last read was small and its data came at once

    async def read(self, size: int) -> bytes:
        loop = asyncio.get_running_loop()
        # uvloop's transports have pause_reading/resume_reading without being asyncio.ReadTransport
        # subclasses: asked by name (an isinstance check turned batching off under uvloop).
        pause = getattr(self.transport, "pause_reading", None)
        resume = getattr(self.transport, "resume_reading", None)
        if self.hurry and pause is not None and resume is not None:
            # The reader's buffer is empty here (the last read took less than it asked for),
            # so it holds no pause of its own that this resume could undo.
            pause()
            try:
                await asyncio.sleep(BATCH_WAIT)
            finally:
                resume()
        started = loop.time()
        data = await self.reader.read(size)
        self.hurry = 0 < len(data) < BATCH_BELOW and loop.time() - started < BATCH_WAIT
        return data



def refused_after(decided: ApiVerdict, refusal: ApiVerdict) -> ApiVerdict:
    """A refusal after the decision keeps the container the decided start named (ApiVerdict.starts)."""
    refusal.starts = decided.starts
    refusal.made_volumes = decided.made_volumes
    return refusal


def end_to_end(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The engine's response headers without the ones about its hop to us."""
    return [(key, value) for key, value in headers
            if key not in (b"connection", b"keep-alive", b"proxy-connection", b"upgrade")]


async def cancelled(task: asyncio.Future[Any]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def pipe(first: bytes, source: asyncio.StreamReader | ClientStream,
               sink: asyncio.StreamWriter | ClientStream) -> None:
    """Raw bytes one way until the source ends, then half-close the sink (attach's stdin
    end reaches the container as EOF)."""
    try:
        if first:
            sink.write(first)
        while data := await source.read(READ_SIZE):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        sink.close()


def body_facts(received: Received) -> dict[str, object]:
    """For the record: how many body bytes came, and whether they came chunked (a build
    context from the legacy builder), since the engine got them re-framed."""
    facts: dict[str, object] = {"body_bytes": received.size}
    if framing.is_chunked(received.event):
        facts["chunked"] = True
    return facts


def take_record(request: ApiRequest, state: PolicyState, *, wait: bool = True,
                shares: LogShares | None = None, log: KeptLog | None = None,
                name_of: Callable[[int], str | None] | None = None) -> tuple[int, bytes]:
    """A record the ForceCommand hands over (gatekeeper.proxy.intake), written to the log of
    the policy in force; without one there is nowhere to write it (the ForceCommand exits 75).
    wait=False: LogBusy when another writer holds the log's lock (gatekeeper.audit).
    `shares`: the record counts against the share of the uid that handed it over."""
    if state.policy is None:
        message = f"gatekeeper: audit log: no usable policy ({state.error})"
        return 503, json.dumps({"message": message}).encode()
    policy = state.policy
    charge = shares.charger(request.uid, audit_share(policy)) if shares is not None else None
    return intake.handle_intake(request, policy.audit_path, wait=wait, ceiling=audit_ceiling(policy),
                                charge=charge, log=log, name_of=name_of)


def denial_body(reason: str, rule: str) -> bytes:
    """What the docker CLI prints after 'Error response from daemon: '."""
    return json.dumps({"message": f"gatekeeper: denied: {reason} (rule {rule})"}).encode()


def peer_of(writer: ClientStream, names: UserNames) -> Caller:
    """The connecting process's credentials from the kernel (SO_PEERCRED), never from the request."""
    sock = writer.get_extra_info("socket")
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size)
    pid, uid, gid = PEERCRED.unpack(raw)
    return Caller(pid, uid, gid, names.name(uid))


class UserNames:
    """uid -> account name (the key of [proxy.users]), looked up again after USER_NAME_SECONDS:
    getpwuid reads the account database on every call (~30 us, once per connection), and
    accounts change only by root's hand; a renamed or replaced account is seen within seconds."""

    __slots__ = ("known", "clock")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.known: dict[int, tuple[str | None, float]] = {}
        self.clock = clock

    def name(self, uid: int) -> str | None:
        now = self.clock()
        known = self.known.get(uid)
        if known is not None and now - known[1] < USER_NAME_SECONDS:
            return known[0]
        if len(self.known) >= USER_NAMES_KEPT:
            self.known.clear()
        name = intake.user_name(uid)
        self.known[uid] = (name, now)
        return name


def warn(text: str) -> None:
    from gatekeeper.audit import to_syslog

    try:
        to_syslog(text)
    except OSError:
        pass


def report(error: BaseException) -> None:
    import traceback

    from gatekeeper.audit import to_syslog

    try:
        to_syslog("proxy internal error: " + "".join(traceback.format_exception(error)).replace("\n", " | "))
    except OSError:
        pass


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The proxy's event loop: uvloop's (libuv; its transports and loop in C take about a tenth
    off the proxy's CPU per request), or asyncio's own where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def listening_socket(path: str, group: str) -> socket.socket:
    """The proxy's socket: mode 0660, owned by `group`; never reachable by anyone else,
    not even between bind and chmod (bound under umask 0177). It listens from the moment
    its path exists: a client that sees the path is queued, never refused."""
    import grp
    import stat

    gid = grp.getgrnam(group).gr_gid
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a stale socket from a previous run
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
        sock.listen(128)
    finally:
        os.umask(old)
    os.chown(path, -1, gid)
    os.chmod(path, 0o660)
    sock.setblocking(False)
    return sock
