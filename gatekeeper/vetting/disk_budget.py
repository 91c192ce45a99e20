"""Disk budget, policy [limits] disk_budget: what one profile may keep on the engine's disk.

Pulled images, built images, volumes and build cache accumulate over days, and no
single command that adds to them is refused: an agent fills the host's disk one
pull at a time. With a budget set, the commands that add to the disk (pull,
build, volume create, compose pull/build, and any command that makes a new named
volume) are refused while the profile's usage is at or past the budget, with the
figures in the message. What the command itself will add cannot be known
beforehand, so one command may go past the budget; the next one is refused.

Usage is the engine's own accounting (`GET /system/df`, what `docker system df -v`
prints), counted for the profile:
* images labelled gatekeeper.owner=<profile> (built through gatekeeper) or recorded
  as pulled by it (gatekeeper.steps' pull records), each at its full Size
  (layers shared with other images count in full);
* volumes labelled gatekeeper.owner=<profile>, at their UsageData.Size;
* all of the engine's build cache: BuildKit's cache records carry no owner, so none
  can be told apart (the reason `docker builder prune` is refused too).
Sizes are decimal (1g = 10^9 bytes), as `docker system df` prints them.
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.owner import DEFAULT_PROFILE, OWNER_LABEL
from gatekeeper.units import log_size

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.policy import Policy
    from gatekeeper.vetting.context import Context

RULE = "disk-budget"
PULLED_BY, PULLED_IMAGE = "gatekeeper.pulled-by", "gatekeeper.pulled-image"
# Commands whose purpose is to add to the engine's disk.
GROWING = frozenset({
    "image pull", "image build", "volume create",  # every build spelling is "image build"
    "compose pull", "compose build",
})  # fmt: skip
UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


class Usage:
    """Bytes one profile keeps on the engine's disk, per kind."""

    __slots__ = ("images", "volumes", "build_cache")

    def __init__(self, images: int, volumes: int, build_cache: int) -> None:
        self.images = images
        self.volumes = volumes
        self.build_cache = build_cache

    @property
    def total(self) -> int:
        return self.images + self.volumes + self.build_cache

    def breakdown(self) -> str:
        return (f"images {human_size(self.images)}, volumes {human_size(self.volumes)}, "
                f"build cache {human_size(self.build_cache)}")


def budget_of(policy: Policy) -> str:
    limits = getattr(policy, "settings", {}).get("limits") or {}
    return str(limits.get("disk_budget") or "")


def grows_disk(ctx: Context) -> bool:
    """The command pulls, builds or creates a volume (also a new named volume of run/compose)."""
    if ctx.located.canonical in GROWING:
        return True
    return any(step[0] == "volume-create" for step in ctx.vetted.prepare)


def vet_disk_budget(ctx: Context) -> None:
    budget = budget_of(ctx.policy)
    if not budget or not grows_disk(ctx):
        return
    limit = log_size(budget) or 0
    usage = profile_usage(ctx.world.disk_usage(ctx.policy), ctx.policy.profile)
    if usage.total >= limit:
        # Stops: an agent filling the host's disk one pull, build or volume at a time.
        raise Denied(
            f"'docker {ctx.located.spelled}' is refused: your images, volumes and build cache use "
            f"{human_size(usage.total)} ({usage.breakdown()}) of your {human_size(limit)} disk budget "
            "(policy [limits] disk_budget; build cache carries no owner, so all of it counts)",
            rule=RULE)


# ---------------------------------------------------------------- the engine's accounting


def profile_usage(df: dict[str, object], profile: str) -> Usage:
    """The profile's share of a /system/df answer (see the module docstring)."""
    volumes = listed(df, "Volumes")
    pulled = {labels_of(v).get(PULLED_IMAGE) for v in volumes if labels_of(v).get(PULLED_BY) == profile}
    images = sum(size_of(image, "Size") for image in listed(df, "Images")
                 if labels_of(image).get(OWNER_LABEL) == profile or image.get("Id") in pulled)
    volume_bytes = sum(size_of(volume.get("UsageData") or {}, "Size") for volume in volumes
                       if labels_of(volume).get(OWNER_LABEL) == profile)
    cache = sum(size_of(record, "Size") for record in listed(df, "BuildCache"))
    return Usage(images, volume_bytes, cache)


def profiles_in(df: dict[str, object]) -> set[str]:
    """Every profile that owns an image or volume, or recorded a pull (for `gatekeeper doctor`)."""
    found = {DEFAULT_PROFILE}
    for key, label in (("Images", OWNER_LABEL), ("Volumes", OWNER_LABEL), ("Volumes", PULLED_BY)):
        found |= {str(labels_of(item)[label]) for item in listed(df, key) if label in labels_of(item)}
    return found


def listed(df: dict[str, object], key: str) -> list[dict[str, object]]:
    items = df.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise Denied(f"the engine's disk usage has a malformed {key}", rule=RULE)
    return items


def labels_of(item: dict[str, object]) -> dict[str, object]:
    labels = item.get("Labels")
    return labels if isinstance(labels, dict) else {}


def size_of(item: object, key: str) -> int:
    """A size in bytes; -1 (the engine did not compute it) counts as 0."""
    value = item.get(key) if isinstance(item, dict) else None
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise Denied(f"the engine's disk usage has a malformed {key}", rule=RULE)
    return max(value, 0)


def human_size(size: int) -> str:
    """go-units HumanSize, as docker prints sizes: 4 significant digits, decimal units."""
    value, unit = float(size), 0
    while value >= 1000 and unit < len(UNITS) - 1:
        value /= 1000
        unit += 1
    return f"{value:.4g}{UNITS[unit]}"
