"""[limits] max_sessions: concurrent gatekeeper sessions per profile.

sshd bounds sessions per connection (MaxSessions) and unauthenticated
connections globally (MaxStartups; PerSourceMaxStartups is global too: neither
is allowed in a Match block), but not sessions per account: each held
`docker events` or `logs -f` costs ~50 MB across sshd, python and docker. So
every allowed command of a capped profile registers ("session", PROFILE) in
the in-flight registry (gatekeeper.inflight) for as long as it (or its docker
child) runs, and a command finding max_sessions live ones already is refused.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.vetting.context import Context

SESSION = "session"  # claim kind (gatekeeper.inflight)


def check_sessions(ctx: Context) -> None:
    cap = ctx.policy.caps.max_sessions
    if not cap:
        return
    profile = ctx.policy.profile
    claims = ctx.world.claims_in_flight(ctx.policy)  # takes the lock
    live = sum(1 for kind, value in claims if kind == SESSION and value == profile)
    if live >= cap:
        raise Denied(f"{live} gatekeeper sessions of profile {profile!r} are running and the cap is {cap} "
                     "(policy [limits] max_sessions): end one (a `logs -f`, `events`, attached run) first",
                     rule="limit-sessions")
    ctx.vetted.sessions.append(profile)
