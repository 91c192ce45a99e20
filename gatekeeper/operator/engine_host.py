"""Which engine socket an operator tool asks (`gatekeeper doctor`, `gatekeeper check`).

Behind `gatekeeper proxy`, [docker] host is the proxy's socket, and the proxy answers only
the users of [proxy.users] (403 to anyone else, root included: no profile, no policy to
hold it to). An operator tool run by someone the proxy does not serve (root, as doctor and
check are run) would get 403 for every question; it asks the engine itself, [proxy]
upstream, the same engine the proxy forwards to. A user of [proxy.users] keeps asking
through the proxy: its answers are that profile's view, what its ForceCommand sees.
"""

from __future__ import annotations

import os
import pwd

UNIX: str = "unix://"


def caller_name() -> str | None:
    """The name of the user running this tool, None when it has none."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return None


def operator_engine_host(settings: dict[str, dict[str, object]], user: str | None = None) -> str:
    """The DOCKER_HOST for an operator tool's engine questions: [docker] host, or
    unix://[proxy] upstream when that is the proxy's socket and `user` (default: the
    caller) is not one of the proxy's [proxy.users]."""
    host = str(settings["docker"]["host"])
    proxy = settings.get("proxy") or {}
    if host != UNIX + str(proxy.get("listen")) or "upstream" not in proxy:
        return host
    users = proxy.get("users")
    name = caller_name() if user is None else user
    if isinstance(users, dict) and name in users:
        return host
    return UNIX + str(proxy["upstream"])
