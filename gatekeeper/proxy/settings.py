"""The proxy's part of the policy ([proxy] and [proxy.users]), and the policy the
proxy currently decides under, or why it has none (then it refuses everything)."""

from __future__ import annotations

from gatekeeper.errors import GatekeeperError
from gatekeeper.policy import DEFAULTS, Policy, load_policy


class ProxySettings:
    """[proxy]: where to listen, for whom, in front of which engine, with which body caps."""

    __slots__ = ("listen", "group", "upstream", "max_body", "max_build_context", "max_spool_per_user",
                 "max_spool", "max_connections_per_user", "header_timeout", "body_timeout", "idle_timeout",
                 "intake_per_minute", "request_rate", "request_burst", "users")
    CAPS = ("max_body", "max_build_context", "max_spool_per_user", "max_spool", "max_connections_per_user",
            "header_timeout", "body_timeout", "idle_timeout", "intake_per_minute", "request_rate",
            "request_burst")
    max_body: int
    max_build_context: int
    max_spool_per_user: int
    max_spool: int
    max_connections_per_user: int
    header_timeout: int
    body_timeout: int
    idle_timeout: int
    intake_per_minute: int
    request_rate: int
    request_burst: int

    def __init__(self, section: dict[str, object]) -> None:
        self.listen = str(section["listen"])
        self.group = str(section["group"])
        self.upstream = str(section["upstream"])
        for key in self.CAPS:
            value = section.get(key, DEFAULTS["proxy"][key])
            setattr(self, key, int(value))  # type: ignore[call-overload]  # validated int
        users = section["users"]
        self.users: dict[str, str] = dict(users) if isinstance(users, dict) else {}

    def profile_of(self, user: str | None) -> str | None:
        """The profile of a connecting user name, None for anyone not listed."""
        return self.users.get(user) if user is not None else None


class PolicyState:
    """Requests are decided under `policy`; with `error` set there is no usable policy
    and every request is refused (never fail open)."""

    __slots__ = ("policy", "settings", "error")

    def __init__(self, policy: Policy | None, settings: ProxySettings, error: str | None) -> None:
        self.policy = policy
        self.settings = settings
        self.error = error


def default_settings() -> ProxySettings:
    return ProxySettings(DEFAULTS["proxy"])


def load_state(path: str, fallback: ProxySettings | None = None) -> PolicyState:
    """The policy at `path`, or a refusing state naming what is wrong with it. A broken
    policy keeps the socket and engine of `fallback` (the last good ones, or the defaults)."""
    try:
        policy = load_policy(path)
    except GatekeeperError as error:
        return PolicyState(None, fallback or default_settings(), error.message)
    return PolicyState(policy, ProxySettings(policy.settings["proxy"]), None)
