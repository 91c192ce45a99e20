"""Building blocks of the docker CLI grammar tables.

A flag is a small record with __slots__ (`Flag`), built with the constructors
below, so the tables stay readable as data and cost little to import on the
ForceCommand path (no dataclasses, no typing at run time).

    Flag(long, short, takes_value, check, why)

* ``long``        the long name without dashes ("volume"); "" if none.
* ``short``       the one-letter shorthand without dash ("v"); "" if none.
* ``takes_value`` False for pflag bool flags (NoOptDefVal set: ``--rm``,
                  ``--rm=false``), True for everything that consumes a value
                  (``--name x``, ``--name=x``, ``-nx``).
* ``check``       what the vetting layer does with the flag (see CHECKS).
* ``why``         for DENY flags: the one-line attack it stops; otherwise "".
"""

from __future__ import annotations

# What a flag's value gets. Names are stable: the vetting layer maps each
# special check to a function, docs/policy.md lists them for operators.
OK = "ok"  # allowed; value (if any) not inspected
DENY = "deny"  # refused outright, whatever the value
DENY_TRUE = "deny-true"  # bool flag refused when it ends up true (--privileged)
NOT_NEGATIVE = "not-negative"  # a number refused when negative (--oom-score-adj)
PATH = "path"  # value is a host path the CLI reads or writes: root rule
PATH_OR_STDIN = "path-or-stdin"  # a host path as PATH, or "-": the CLI reads stdin (kept as typed)
# Special checks, implemented by gatekeeper.vetting:
VOLUME = "volume"  # -v/--volume SRC:DST[:OPTS] (bind source is a host path)
MOUNT = "mount"  # --mount CSV (type=bind src=..., volume-opt, ...)
SECURITY_OPT = "security-opt"
NAMESPACE = "namespace"  # --pid/--ipc/--uts/--userns/--cgroupns: no host/container:
NETWORK = "network"  # --network/--net: no host, container:
SYSCTL = "sysctl"
ULIMIT = "ulimit"  # --ulimit NAME=SOFT[:HARD]: no real-time or raised scheduling priority
BUILD_OUTPUT = "build-output"  # build -o/--output
BUILD_SECRET = "build-secret"  # noqa: S105 - a check name, not a secret  # build --secret id=,src=
BUILD_CONTEXT = "build-context"  # build --build-context name=path
BUILD_CACHE = "build-cache"  # build --cache-to/--cache-from type=local
BUILD_NETWORK = "build-network"
ENV_FILE = "env-file"  # alias of PATH kept separate for messages
ADDRESS = "address"  # --ip/--ip6/--gateway/--ip-range/--aux-address: inside [network] subnets
SUBNET = "subnet"  # network create --subnet: inside [network] subnets, overlapping nothing
PUBLISH = "publish"  # -p/--publish: host address and port inside policy [ports]
PUBLISH_ALL = "publish-all"  # -P: every exposed port on every interface, unless [ports] publish_all

CHECKS = frozenset(
    {
        OK, DENY, DENY_TRUE, NOT_NEGATIVE, PATH, PATH_OR_STDIN, VOLUME, MOUNT, SECURITY_OPT, NAMESPACE,
        NETWORK, SYSCTL, ULIMIT, BUILD_OUTPUT, BUILD_SECRET, BUILD_CONTEXT,
        BUILD_CACHE, BUILD_NETWORK, ENV_FILE, ADDRESS, SUBNET, PUBLISH, PUBLISH_ALL,
    }
)


class Flag:
    """One flag of a docker command's grammar table (read-only once built)."""

    __slots__ = ("long", "short", "takes_value", "check", "why")

    def __init__(self, long: str, short: str, takes_value: bool, check: str, why: str) -> None:
        self.long = long
        self.short = short
        self.takes_value = takes_value
        self.check = check
        self.why = why

    def __repr__(self) -> str:
        return f"Flag({self.long!r}, {self.short!r}, {self.takes_value}, {self.check!r}, {self.why!r})"


def b(long: str, short: str = "", check: str = OK, why: str = "") -> Flag:
    """A bool flag (no value unless written --flag=value)."""
    return Flag(long, short, False, check, why)


def v(long: str, short: str = "", check: str = OK, why: str = "") -> Flag:
    """A flag that consumes a value."""
    return Flag(long, short, True, check, why)


def deny_b(long: str, short: str = "", why: str = "") -> Flag:
    return Flag(long, short, False, DENY, why)


def deny_v(long: str, short: str = "", why: str = "") -> Flag:
    return Flag(long, short, True, DENY, why)


def table(*flags: Flag) -> dict[str, Flag]:
    """Index flags by every spelling pflag accepts: '--long' and '-s'."""
    out: dict[str, Flag] = {}
    for flag in flags:
        long, short = flag.long, flag.short
        if long:
            out["--" + long] = flag
        if short:
            out["-" + short] = flag
    return out


HELP = b("help", "h")
