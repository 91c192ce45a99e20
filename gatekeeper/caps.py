"""The policy's [limits] as numbers, parsed once when the policy is loaded.

A cap or default of "" or 0 means "no cap" / "no default". The vetters that
enforce them are gatekeeper.vetting.limits, log_caps, running and sessions.
"""

from __future__ import annotations

from gatekeeper.units import NANO, format_cpus, go_duration, ram_in_bytes

# `--health-interval 1ms` on three containers kept both host CPUs busy in dockerd,
# containerd and runc, outside every container's cgroup: floors in [limits].
# run flag -> (policy [limits] key, compose healthcheck key)
HEALTH_FLOORS = {
    "health-interval": ("min_health_interval", "interval"),
    "health-start-interval": ("min_health_start_interval", "start_interval"),
    "health-timeout": ("min_health_timeout", "timeout"),
    "health-start-period": ("min_health_start_period", "start_period"),
    "health-retries": ("min_health_retries", "retries"),
}


class Caps:
    """The policy's [limits]: caps, the defaults injected when a flag is absent, floors, counts."""

    __slots__ = ("memory", "cpus", "pids", "default_memory", "default_cpus", "default_pids", "max_running",
                 "health", "build_cgroup_parent", "max_sessions", "log_max_size", "log_max_file")

    def __init__(self, limits: dict[str, object]) -> None:
        self.memory = ram_in_bytes(str(limits.get("memory") or "0")) or 0
        self.cpus = round(number(limits.get("cpus")) * NANO)
        self.pids = count(limits.get("pids_limit"))
        self.default_memory = str(limits.get("default_memory") or "")
        self.default_cpus = number(limits.get("default_cpus"))
        self.default_pids = count(limits.get("default_pids_limit"))
        self.max_running = count(limits.get("max_running"))
        # run flag -> floor (nanoseconds, or a count for retries); absent = no floor
        self.health = {flag: floor for flag, (key, _) in HEALTH_FLOORS.items()
                       if (floor := health_floor(flag, limits.get(key)))}
        self.build_cgroup_parent = str(limits.get("build_cgroup_parent") or "")
        self.max_sessions = count(limits.get("max_sessions"))
        self.log_max_size = str(limits.get("log_max_size") or "")
        self.log_max_file = count(limits.get("log_max_file"))

    def any(self) -> bool:
        capped = self.memory or self.cpus or self.pids or self.max_running
        return bool(capped or self.defaults() or self.health)

    def defaults(self) -> list[tuple[str, str]]:
        """(flag, value) pairs to inject when the flag is absent."""
        out = []
        if self.default_memory:
            out.append(("memory", self.default_memory))
        if self.default_cpus:
            out.append(("cpus", format_cpus(self.default_cpus)))
        if self.default_pids:
            out.append(("pids-limit", str(self.default_pids)))
        return out


def number(value: object) -> float:
    """A validated CPU count (int or float; the policy's schema checked it)."""
    return float(value) if isinstance(value, (int, float)) else 0.0


def count(value: object) -> int:
    """A validated whole number, 0 for absent."""
    return int(value) if isinstance(value, int) else 0


def health_floor(flag: str, value: object) -> int:
    if flag == "health-retries":
        return count(value)
    return go_duration(str(value)) or 0 if value else 0
