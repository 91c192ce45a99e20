"""`gatekeeper proxy --policy FILE`: the API-layer daemon in front of the engine's socket.

It listens on [proxy] listen (mode 0660, group [proxy] group), decides every request
with gatekeeper.proxy.vet for the caller's profile ([proxy.users], from SO_PEERCRED),
and forwards what is allowed to [proxy] upstream.

SIGHUP reloads the policy. A policy that cannot be loaded (at start or on reload)
makes the proxy refuse every request, with the reason, until a reload succeeds:
the operator changed the file, so the old policy is no longer the one they meant,
and failing open is never an option. The socket's path and group are fixed at start
(a reload that changes them says so in syslog; restart to apply).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from gatekeeper.errors import EX_CONFIG

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gatekeeper.proxy.contract import ApiRequest, ApiVerdict, EngineQueries
    from gatekeeper.proxy.server import Proxy
    from gatekeeper.proxy.settings import PolicyState

USAGE = """\
usage: gatekeeper proxy --policy FILE

Serve the engine's API on [proxy] listen, allowing only what the policy allows
to the users listed in [proxy.users]. SIGHUP reloads FILE; SIGTERM stops.
A policy that cannot be loaded makes it refuse every request (HTTP 403).

examples:
  gatekeeper proxy --policy /etc/gatekeeper/policy.toml
  DOCKER_HOST=unix:///run/gatekeeper/docker.sock docker ps     (as a user in [proxy.users])
  systemctl reload gatekeeper-proxy                            (SIGHUP: the policy again)
"""


def main(argv: list[str]) -> int:
    if argv in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    path = policy_argument(argv)
    if path is None:
        sys.stderr.write(USAGE)
        return 64
    from gatekeeper.proxy.settings import load_state

    state = load_state(path)
    if state.error is not None:
        say(f"policy unusable, refusing every request until a reload fixes it: {state.error}")
    try:
        from gatekeeper.proxy.server import new_event_loop

        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(serve(path, state))
    except (KeyError, OSError) as error:
        say(f"cannot listen on {state.settings.listen} (group {state.settings.group}): {error}")
        return EX_CONFIG


def policy_argument(argv: list[str]) -> str | None:
    if len(argv) == 2 and argv[0] == "--policy":
        return argv[1]
    if len(argv) == 1 and argv[0].startswith("--policy="):
        return argv[0].partition("=")[2]
    return None


async def serve(path: str, state: PolicyState) -> int:
    from gatekeeper.proxy.server import Proxy, listening_socket, serve_clients
    from gatekeeper.proxy.verdicts import PureVerdicts

    proxy = Proxy(state, production_decide, production_transform, pure=PureVerdicts())
    listen, group = state.settings.listen, state.settings.group
    sock = listening_socket(listen, group)
    server = await serve_clients(proxy, sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload, proxy, path)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    say(f"listening on {listen} (group {group}), engine at {state.settings.upstream}")
    async with server:
        await stop.wait()
    remove_socket(listen)
    proxy.pool.close()
    proxy.log.close()
    proxy.write_summaries(proxy.state, force=True)  # refusals counted but not yet summed up
    return 0


def reload(proxy: Proxy, path: str) -> None:
    from gatekeeper.proxy.settings import load_state

    old = proxy.state.settings
    state = load_state(path, fallback=old)
    proxy.state = state
    proxy.rates.buckets.clear()  # [proxy] request_rate may have changed: every caller starts full
    if state.error is not None:
        say(f"reload: policy unusable, refusing every request: {state.error}")
        return
    if (state.settings.listen, state.settings.group) != (old.listen, old.group):
        say("reload: [proxy] listen/group changed; restart the proxy to apply them")
        state.settings.listen, state.settings.group = old.listen, old.group
    digest = state.policy.sha256[:12] if state.policy is not None else "?"
    say(f"reload: policy {path} ({digest}) in force")


def production_decide(request: ApiRequest, policy: object, engine: EngineQueries) -> ApiVerdict:
    from gatekeeper.proxy.vet import vet_api_request

    return vet_api_request(request, policy, engine)  # type: ignore[arg-type]  # server.Decide hands the state's Policy as object


def production_transform(name: str, status: int, body: bytes, request: ApiRequest) -> bytes:
    from gatekeeper.proxy.vet import transform_response

    return transform_response(name, status, body, request)


def remove_socket(path: str) -> None:
    import os

    try:
        os.unlink(path)
    except OSError:
        pass


def say(line: str) -> None:
    sys.stderr.write(f"gatekeeper proxy: {line}\n")
    sys.stderr.flush()
    try:
        from gatekeeper.audit import to_syslog

        to_syslog(f"proxy: {line}")
    except OSError:
        pass
