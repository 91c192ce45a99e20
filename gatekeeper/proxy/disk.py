"""[limits] disk_budget at the API layer: a pull, a build or a new volume is refused
while the caller's profile is at or past its budget, counted from the engine's own
GET /system/df exactly as the CLI layer counts it (gatekeeper.vetting.disk_budget)."""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.vetting.disk_budget import RULE, budget_of, human_size, profile_usage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gatekeeper.proxy.vet import Call


def check_disk_budget(call: Call, what: str) -> None:
    from gatekeeper.proxy import objects
    from gatekeeper.vetting.log_caps import log_size

    budget = budget_of(call.policy)
    if not budget:
        return
    status, df = objects.engine_get(call.engine, "/system/df", "the engine's disk usage")
    if status != 200 or not isinstance(df, dict):
        raise Denied("cannot learn the engine's disk usage for [limits] disk_budget "
                     f"(engine status {status})", rule=RULE)
    usage = profile_usage(df, call.profile)
    limit = log_size(budget) or 0
    if usage.total >= limit:
        # Stops: an agent filling the host's disk one pull, build or volume at a time.
        raise Denied(f"{what} is refused: your images, volumes and build cache use {human_size(usage.total)} "
                     f"({usage.breakdown()}) of your {human_size(limit)} disk budget (policy [limits] "
                     "disk_budget; build cache carries no owner, so all of it counts); remove some first",
                     rule=RULE)
