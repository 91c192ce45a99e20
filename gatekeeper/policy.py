"""The policy: an embedded default, optionally overridden key by key by a
root-owned TOML file named on the ForceCommand line (`--policy FILE`).

Nothing here reads the environment. Unknown keys, wrong types, unknown
command names or an unreadable file raise PolicyError: the caller denies
everything (exit 78). Command names are normalised to canonical paths at load
time, so a decision compares canonical paths only.

Parsing TOML costs more than everything else an SSH command does (tomllib
pulls in re, string, typing and datetime), so `gatekeeper policy compile FILE`
stores the parsed overrides next to the file, in FILE.compiled, keyed by the
file's SHA-256. Loading then reads the TOML's bytes, hashes them, and takes
the parsed overrides from the compiled file only if the hashes match and the
compiled file is as well protected as the source (see `trusted_compiled`).
The overrides go through the same validation either way.
"""

from __future__ import annotations

import posix  # os's system calls without importing os (gatekeeper.environment)

from gatekeeper.digest import sha256_hex
from gatekeeper.errors import PolicyError
from gatekeeper.grammar.names import canonical_name
from gatekeeper.owner import DEFAULT_PROFILE

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeGuard

DEFAULT_ALLOWED = (
    # containers ([scope] owned: only the agent's)
    "ps", "inspect", "logs", "start", "stop", "restart", "kill", "rm", "run", "create",
    "container inspect", "container top", "container port", "container stats",
    "container wait", "container prune",
    # images
    "images", "image inspect", "image history", "pull", "build", "rmi", "image prune",
    "builder prune",
    # disk and engine
    "system df", "system info", "system events", "system prune", "version",
    # networks and volumes: read, prune (forced to the agent's own by label), and
    # network create (bridge driver only, owner label injected, addresses vetted)
    "network ls", "network inspect", "network prune", "network create",
    "volume ls", "volume inspect", "volume prune",
    # compose
    "compose up", "compose down", "compose ps", "compose logs", "compose start",
    "compose stop", "compose restart", "compose pull", "compose build",
    "compose config", "compose ls", "compose images", "compose top",
    "compose version", "compose create", "compose run", "compose kill", "compose rm",
)  # fmt: skip

# Label keys that make other software act: compose's own (a container posing as a
# service of the operator's project), orchestrators, reverse proxies that route
# traffic by label, updaters, schedulers and healers that run or restart containers.
REFUSED_LABELS = (
    "com.docker.compose.*", "com.docker.stack.*", "com.docker.swarm.*",
    "traefik.*", "caddy", "caddy.*", "caddy_*", "com.centurylinklabs.watchtower.*",
    "ofelia.*", "autoheal", "autoheal.*", "sablier.*", "diun.*", "wud.*",
)  # fmt: skip

# Listed for documentation and precedence: blocked always wins over allowed.
DEFAULT_BLOCKED = (
    "exec", "cp", "commit", "diff", "export", "import", "load", "save", "attach",
    "push", "tag", "system dial-stdio",
    "compose exec", "compose cp", "compose attach", "compose commit",
    "compose export", "compose push", "compose publish", "compose watch",
)  # fmt: skip

DEFAULTS: dict[str, dict[str, object]] = {
    "docker": {
        "binary": "/usr/bin/docker",
        "host": "unix:///var/run/docker.sock",
        "workdir": "/home/ai-worker",
        "config_dir": "/etc/gatekeeper/docker",
    },
    # reserved_tags: log tags no container may use (journald/syslog identifiers)
    "audit": {"path": "/var/log/gatekeeper/audit.jsonl", "syslog": True, "reserved_tags": ["gatekeeper"],
              # true: the ForceCommand hands its records to `gatekeeper proxy` ([proxy] listen),
              # which writes the log; the agent's account cannot open it (gatekeeper.proxy.intake)
              "via_proxy": False,
              # bytes the live log may reach; past it `gatekeeper proxy` refuses every request
              # (rule audit-full) rather than fill the disk; 0 = no ceiling (gatekeeper.audit)
              "max_bytes": 2_000_000_000,
              # bytes one uid's records may take of the live log: past it the proxy refuses that uid
              # only (rule audit-share-full), so one agent's flood stops that agent; 0 = no share
              "max_bytes_per_uid": 500_000_000},
    "commands": {"allowed": list(DEFAULT_ALLOWED), "blocked": list(DEFAULT_BLOCKED)},
    # state_dir: gatekeeper.inflight's registry; a root's top-level dot entry is out of containers' reach
    "paths": {"allowed_roots": ["/home/ai-worker"], "state_dir": "/home/ai-worker/.gatekeeper"},
    # Off ("" / 0) in the embedded default: examples/default.toml sets them.
    "limits": {
        "memory": "",
        "cpus": 0,
        "pids_limit": 0,
        "default_memory": "",
        "default_cpus": 0,
        "default_pids_limit": 0,
        "max_running": 0,
        # floors for healthchecks ("" / 0: none) and the cgroup builds run under
        "min_health_interval": "",
        "min_health_start_interval": "",
        "min_health_timeout": "",
        "min_health_start_period": "",
        "min_health_retries": 0,
        "build_cgroup_parent": "",
        "max_sessions": 0,  # concurrent gatekeeper sessions per profile
        "log_max_size": "",
        "log_max_file": 0,
        # images, volumes and build cache the profile owns (engine's /system/df); past it,
        # pull, build and volume create are refused (gatekeeper.vetting.disk_budget)
        "disk_budget": "",
    },
    # Subnets the agent may give its networks and containers (compose ipam,
    # ipv4_address, --ip, network create --subnet); none: the engine picks.
    # ipv6: IPv6 networks (network create --ipv6, compose enable_ipv6, the API's EnableIPv6);
    # the engine then turns on the host's IPv6 forwarding (gatekeeper.vetting.addresses).
    "network": {"subnets": [], "ipv6": False},
    # Published ports (-p, compose ports): host addresses they may listen on and host
    # port ranges; -P (every exposed port, every interface) only with publish_all.
    # Loopback by default: a service the agent runs is for this host, not the network.
    "ports": {"host_addresses": ["127.0.0.1", "::1"], "host_ports": ["1024-65535"], "publish_all": False},
    # Registries/repositories images may come from (pull, run, create, build FROM and
    # # syntax=, compose image:), as patterns such as "docker.io/library/*"; empty: any.
    # shared: the operator's local images (same patterns) the agent may run, build FROM
    # and mount; beside them only its own and registry images (gatekeeper.image_scope).
    # host_registries: registries on this host itself (localhost, loopback, link-local,
    # as "127.0.0.1:5000" or "localhost:*") pulls may use; none by default (the engine
    # pulls on the host's network, where loopback-only services listen).
    "images": {"allowed": [], "shared": [], "pin_digests": False, "host_registries": []},
    # Per profile, across its sessions (gatekeeper.budgets); 0: no budget.
    "budgets": {"commands_per_minute": 0, "containers_per_hour": 0, "pulls_per_day": 0, "builds_per_day": 0},
    # Commands (paths) and rules (gatekeeper.approval.ASKABLE_RULES) that need an operator's
    # `gatekeeper approve ID`; approvals live in `dir` (root's), valid for `expires`.
    "approval": {"ask": [], "dir": "/var/lib/gatekeeper/approvals", "expires": "15m"},
    # Keys (case-insensitive substrings) whose values inspect output hides for
    # objects the agent does not own; environment values are always hidden.
    "redact": {"keys": ["password", "passwd", "secret", "token", "credential",
                        "apikey", "api_key", "privatekey", "private_key", "authorization", "authconfig"]},
    # Per action class: "owned" = only objects labelled gatekeeper.owner=<profile>
    # (gatekeeper.vetting.ownership asks the engine), "all" = any object.
    "scope": {
        "stop": "owned", "start": "owned", "restart": "owned", "rm": "owned",
        "logs": "owned", "kill": "owned", "top": "owned", "port": "owned",
        "stats": "owned", "wait": "owned", "rmi": "owned",
        "ps": "all", "images": "all", "inspect": "all",
        # `image history` shows every build step with its ARG and ENV values (and is how the agent
        # would learn the operator's steps to build them first): "owned" = the images it may use
        # (gatekeeper.image_scope: its own, its pulls, registry images, [images] shared).
        "history": "owned",
    },
    # Names or glob patterns (and labels "key=value" or "key") no command may
    # stop, remove, kill, restart or prune.
    "protect": {"containers": [], "images": [], "volumes": [], "networks": [], "labels": []},
    # Objects the agent does not own but may use anyway (names or glob patterns):
    # volumes it may mount, networks it may join (never with an alias), image tags
    # it may re-point by build or pull, containers it may --link to.
    "shared": {"volumes": [], "networks": [], "images": [], "containers": []},
    # Label keys (glob patterns, case-insensitive) the agent may not set on what it
    # creates: labels other software acts on. gatekeeper.* is refused regardless.
    "labels": {"refused": list(REFUSED_LABELS)},
    # Names the agent gives (volumes, networks, image tags, compose projects, container
    # names) start with this prefix (gatekeeper.name_prefix); "" switches the rule off.
    "names": {"prefix": "ai-"},
    # `gatekeeper proxy` (gatekeeper.proxy): its socket, the engine's, body caps in bytes,
    # and [proxy.users]: connecting unix user (SO_PEERCRED) -> profile; anyone else gets 403.
    "proxy": {
        "listen": "/run/gatekeeper/docker.sock",
        "group": "ai-worker",
        "upstream": "/var/run/docker.sock",
        "max_body": 4 << 20,
        "max_build_context": 2 << 30,
        # What one caller may hold at once (gatekeeper.proxy.guards; 0 = no cap): build
        # contexts spooled, per uid and overall (bytes), open connections per uid.
        "max_spool_per_user": 4 << 30,
        "max_spool": 8 << 30,
        "max_connections_per_user": 256,
        # Seconds a client may take: for a request's head from its first byte, for its
        # body, and between requests on a kept-alive connection (streams are exempt).
        "header_timeout": 30,
        "body_timeout": 300,
        "idle_timeout": 300,
        # Records per uid per minute the audit intake (POST /_gatekeeper/audit) writes;
        # the rest are refused and summed up in one record.
        "intake_per_minute": 600,
        # Requests per uid (gatekeeper.proxy.request_rate): a token bucket of request_burst
        # refilled at request_rate a second, a request takes one token (+1 per KiB of its
        # target or intake record); past it 429, counted into one summary record a minute.
        # request_rate = 0: no budget.
        "request_rate": 20,
        "request_burst": 2000,
        "users": {},
    },
}  # fmt: skip

ABSOLUTE_PATH = "absolute path"
STRING = "string"
BOOLEAN = "boolean"
COMMAND_LIST = "list of command names"
PATH_LIST = "list of absolute paths"
MEMORY_SIZE = "memory size such as \"2g\" (or \"\" for none)"
CPU_COUNT = "number of CPUs, 0 or more"
COUNT = "whole number, 0 or more"
POSITIVE_COUNT = "whole number, 1 or more"
LOG_SIZE = "log file size such as \"10m\" (decimal units; or \"\" for none)"
DISK_SIZE = "disk size such as \"20g\" (decimal units, as docker system df counts; or \"\" for none)"
STRING_LIST = "list of strings"
SCOPE = '"all" or "owned"'
PATTERN_LIST = "list of names or glob patterns"
LABEL_LIST = 'list of labels "key=value" or "key"'
DURATION = 'duration such as "5s" (or "" for none)'
CGROUP = 'cgroup path such as "/gatekeeper-build" or "gatekeeper-build.slice" (or "")'
SUBNET_LIST = 'list of subnets in CIDR form ("198.51.100.0/24")'
GROUP_NAME = "group name"
USER_PROFILES = 'table of user name = "profile"'
ADDRESS_LIST = 'list of IP addresses ("127.0.0.1", "::1"; "0.0.0.0" and "::" are every interface)'
ASK_LIST = "list of command names or askable rule ids (image-source, protected)"
PORT_RANGE_LIST = 'list of ports or port ranges ("8080", "1024-65535")'
NAME_PREFIX = 'name prefix such as "ai-" (lower-case letters, digits, _ . -; "" for none)'

SCHEMA: dict[str, dict[str, str]] = {
    "docker": {
        "binary": ABSOLUTE_PATH,
        "host": STRING,
        "workdir": ABSOLUTE_PATH,
        "config_dir": ABSOLUTE_PATH,
    },
    "audit": {"path": ABSOLUTE_PATH, "syslog": BOOLEAN, "reserved_tags": STRING_LIST, "via_proxy": BOOLEAN,
              "max_bytes": COUNT, "max_bytes_per_uid": COUNT},
    "commands": {"allowed": COMMAND_LIST, "blocked": COMMAND_LIST},
    "paths": {"allowed_roots": PATH_LIST, "state_dir": ABSOLUTE_PATH},
    "limits": {
        "memory": MEMORY_SIZE,
        "cpus": CPU_COUNT,
        "pids_limit": COUNT,
        "default_memory": MEMORY_SIZE,
        "default_cpus": CPU_COUNT,
        "default_pids_limit": COUNT,
        "max_running": COUNT,
        "min_health_interval": DURATION,
        "min_health_start_interval": DURATION,
        "min_health_timeout": DURATION,
        "min_health_start_period": DURATION,
        "min_health_retries": COUNT,
        "build_cgroup_parent": CGROUP,
        "max_sessions": COUNT,
        "log_max_size": LOG_SIZE,
        "log_max_file": COUNT,
        "disk_budget": DISK_SIZE,
    },
    "network": {"subnets": SUBNET_LIST, "ipv6": BOOLEAN},
    "ports": {"host_addresses": ADDRESS_LIST, "host_ports": PORT_RANGE_LIST, "publish_all": BOOLEAN},
    "images": {"allowed": PATTERN_LIST, "shared": PATTERN_LIST, "pin_digests": BOOLEAN,
               "host_registries": PATTERN_LIST},
    "budgets": {"commands_per_minute": COUNT, "containers_per_hour": COUNT, "pulls_per_day": COUNT,
                "builds_per_day": COUNT},
    "approval": {"ask": ASK_LIST, "dir": ABSOLUTE_PATH, "expires": DURATION},
    "redact": {"keys": STRING_LIST},
    "scope": {key: SCOPE for key in DEFAULTS["scope"]},
    "protect": {
        "containers": PATTERN_LIST, "images": PATTERN_LIST, "volumes": PATTERN_LIST,
        "networks": PATTERN_LIST, "labels": LABEL_LIST,
    },
    "shared": {"volumes": PATTERN_LIST, "networks": PATTERN_LIST, "images": PATTERN_LIST,
               "containers": PATTERN_LIST},
    "labels": {"refused": PATTERN_LIST},
    "names": {"prefix": NAME_PREFIX},
    "proxy": {"listen": ABSOLUTE_PATH, "group": GROUP_NAME, "upstream": ABSOLUTE_PATH,
              "max_body": COUNT, "max_build_context": COUNT, "max_spool_per_user": COUNT, "max_spool": COUNT,
              "max_connections_per_user": COUNT, "header_timeout": COUNT, "body_timeout": COUNT,
              "idle_timeout": COUNT, "intake_per_minute": COUNT, "request_rate": COUNT,
              "request_burst": POSITIVE_COUNT, "users": USER_PROFILES},
}  # fmt: skip

EMBEDDED = "(embedded default)"
COMPILED_SUFFIX = ".compiled"
COMPILED_FORMAT = 1


class Policy:
    """The effective, validated policy, parsed once at load. Treat as read-only.

    Vetters read the typed attributes; `settings` (the merged sections, as the TOML
    spells them) is kept for `gatekeeper policy show` and the operator tools."""

    __slots__ = (
        "binary", "host", "workdir", "config_dir", "audit_path", "syslog",
        "allowed", "blocked", "allowed_roots", "state_dir", "source", "sha256", "settings",
        "profile", "scope", "protect", "shared", "refused_labels", "redact_keys", "reserved_tags",
        "subnets", "network_ipv6", "caps", "ask", "approvals_dir", "approval_expires", "budgets",
        "images_allowed", "images_shared", "pin_digests", "images_host_registries", "via_proxy",
        "name_prefix", "views",
    )  # fmt: skip

    def __init__(self, settings: dict[str, dict[str, object]], source: str, sha256: str) -> None:
        docker, audit = settings["docker"], settings["audit"]
        self.binary = str(docker["binary"])
        self.host = str(docker["host"])
        self.workdir = str(docker["workdir"])
        self.config_dir = str(docker["config_dir"])
        self.audit_path = str(audit["path"])
        self.syslog = bool(audit["syslog"])
        commands = settings["commands"]
        self.blocked = frozenset(canonical_names(commands["blocked"]))
        self.allowed = frozenset(canonical_names(commands["allowed"])) - self.blocked
        roots = strings(settings["paths"]["allowed_roots"])
        self.allowed_roots = tuple(normalise_root(root) for root in roots)
        self.state_dir = normalise_root(str(settings["paths"]["state_dir"]))
        check_state_dir(self.state_dir, self.allowed_roots, source)
        self.source = source
        self.sha256 = sha256
        self.settings = settings
        # --name on the ForceCommand line: the owner label of what the agent creates.
        self.profile = DEFAULT_PROFILE
        # [scope] action class -> "owned" | "all" (gatekeeper.vetting.ownership)
        self.scope = {key: str(value) for key, value in settings["scope"].items()}
        # [protect] / [shared] kind -> names or glob patterns ("labels": "k=v" or "k")
        self.protect = {key: strings(value) for key, value in settings["protect"].items()}
        self.shared = {key: strings(value) for key, value in settings["shared"].items()}
        self.refused_labels = strings(settings["labels"]["refused"])  # key globs, matched lower-case
        self.redact_keys = tuple(key.lower() for key in strings(settings["redact"]["keys"]))
        self.reserved_tags = tuple(tag.lower() for tag in strings(settings["audit"]["reserved_tags"]))
        self.subnets = strings(settings["network"]["subnets"])  # CIDRs; parsed where used (ipaddress)
        self.network_ipv6 = settings["network"]["ipv6"] is True
        self.caps = Caps(settings["limits"])
        # [approval]: the rule ids a denial of which may be asked for (gatekeeper.approval)
        approval = settings["approval"]
        self.ask = strings(approval["ask"])
        self.approvals_dir = str(approval["dir"])
        self.approval_expires = str(approval["expires"])  # a Go duration (gatekeeper.units)
        # [budgets] key -> count per window, 0 for none (gatekeeper.budgets)
        self.budgets = {key: count(value) for key, value in settings["budgets"].items()}
        # [images] (gatekeeper.vetting.images)
        self.images_allowed = strings(settings["images"]["allowed"])
        self.images_shared = strings(settings["images"]["shared"])  # gatekeeper.image_scope
        self.pin_digests = bool(settings["images"]["pin_digests"])
        self.images_host_registries = strings(settings["images"]["host_registries"])
        # [audit] via_proxy: the proxy writes the log, the agent's account cannot open it
        self.via_proxy = bool(settings["audit"].get("via_proxy"))
        # [names] prefix of every name the agent gives ("" = off; gatekeeper.name_prefix)
        self.name_prefix = str(settings["names"]["prefix"])
        self.views: dict[str, Policy] = {}  # profile -> this policy seen as its (for_profile)

    def for_profile(self, profile: str) -> Policy:
        """The same policy seen as another profile's (the API layer serves several with one),
        made once per profile: a loaded policy is not changed afterwards (a reload is a new
        Policy), and the proxy asks for the caller's view on every request that names an object."""
        views = self.views
        view = views.get(profile)
        if view is None:
            view = Policy.__new__(Policy)
            for name in Policy.__slots__:
                setattr(view, name, getattr(self, name))
            view.profile = profile
            views[profile] = view  # (every view shares this dict: each one's copy differs only by profile)
        return view

    def through_proxy(self) -> bool:
        """[docker] host is `gatekeeper proxy`'s socket ([proxy] listen): the deployment's two
        layers. The proxy then takes the engine steps only it may (pull records, which it
        refuses to anyone else: gatekeeper.proxy.pulls); the CLI layer leaves them to it."""
        return self.host == "unix://" + str(self.settings["proxy"]["listen"])

    def scope_of(self, key: str) -> str:
        """"owned" or "all" for an action class; a class the policy does not know is owned-only."""
        return self.scope.get(key, "owned")

    def strings_of(self, section: str, key: str) -> tuple[str, ...]:
        """A validated list of strings in the settings, typed (for sections read where used)."""
        return strings(self.settings[section][key])

    def count_of(self, section: str, key: str) -> int:
        """A validated whole number in the settings, typed; 0 for absent."""
        return count(self.settings[section][key])


def strings(value: object) -> tuple[str, ...]:
    """A validated list of strings (the schema checked it) as a tuple."""
    return tuple(str(item) for item in value) if isinstance(value, (list, tuple)) else ()


NANO = 10**9  # docker's --cpus in nano-CPUs (gatekeeper.units.nano_cpus)

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
    """The policy's [limits] as numbers ("" / 0 = no cap, no default): caps, the
    defaults injected when a flag is absent, healthcheck floors, counts."""

    __slots__ = ("memory", "cpus", "pids", "default_memory", "default_cpus", "default_pids", "max_running",
                 "health", "build_cgroup_parent", "max_sessions", "log_max_size", "log_max_file")

    def __init__(self, limits: dict[str, object]) -> None:
        self.memory = memory_bytes(str(limits.get("memory") or ""))
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
            from gatekeeper.units import format_cpus

            out.append(("cpus", format_cpus(self.default_cpus)))
        if self.default_pids:
            out.append(("pids-limit", str(self.default_pids)))
        return out


def memory_bytes(text: str) -> int:
    """A validated memory size in bytes, 0 for none (units are imported only when one is set)."""
    if not text:
        return 0
    from gatekeeper.units import ram_in_bytes

    return ram_in_bytes(text) or 0


def number(value: object) -> float:
    """A validated CPU count (int or float; the policy's schema checked it)."""
    return float(value) if isinstance(value, (int, float)) else 0.0


def count(value: object) -> int:
    """A validated whole number, 0 for absent."""
    return int(value) if isinstance(value, int) else 0


def health_floor(flag: str, value: object) -> int:
    if flag == "health-retries":
        return count(value)
    if not value:
        return 0
    from gatekeeper.units import go_duration

    return go_duration(str(value)) or 0


def load_policy(path: str | None, profile: str | None = None) -> Policy:
    """The embedded default, overridden by the TOML file at `path` if given,
    applied for `profile` (the --name of the key; "default" if None)."""
    policy = policy_from_file(path)
    if profile is not None:
        if not is_profile_name(profile):
            raise PolicyError(f"invalid profile name {profile!r} (--name): {PROFILE_NAME_HINT}")
        policy.profile = profile
    return policy


def policy_from_file(path: str | None) -> Policy:
    if path is None:
        return Policy(DEFAULTS, EMBEDDED, "")
    data = read_policy_file(path)
    sha256 = sha256_hex(data)
    overrides = compiled_overrides(path, sha256)
    if overrides is None:
        overrides = parse_toml(data, path)
    settings = merge(DEFAULTS, overrides, path)
    return Policy(settings, path, sha256)


def read_policy_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise PolicyError(f"cannot read policy {path}: {error.strerror}") from None


def parse_toml(data: bytes, path: str) -> dict[str, object]:
    import tomllib

    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PolicyError(f"invalid policy {path}: {error}") from None


def compiled_overrides(path: str, sha256: str) -> dict[str, object] | None:
    """The parsed TOML from PATH.compiled if it is trusted and made from these bytes.

    Anything else (absent, stale, unreadable, untrusted, garbled) means None:
    the caller parses the TOML itself, so a bad compiled file costs time, never safety.
    """
    import marshal  # built in and already loaded by the interpreter

    try:
        raw = read_trusted_compiled(path)
        # Only from a file that root or the policy's owner wrote (trusted_compiled).
        record = marshal.loads(raw) if raw is not None else None  # noqa: S302
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(record, dict) or record.get("format") != COMPILED_FORMAT:
        return None
    overrides = record.get("overrides")
    if record.get("sha256") != sha256 or not isinstance(overrides, dict):
        return None
    return overrides


def read_trusted_compiled(path: str) -> bytes | None:
    flags = posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK
    fd = posix.open(path + COMPILED_SUFFIX, flags)
    try:
        if not trusted_compiled(posix.fstat(fd), posix.stat(path)):
            return None
        with open(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        posix.close(fd)


def trusted_compiled(compiled: posix.stat_result, source: posix.stat_result) -> bool:
    """A regular file owned by root or by the policy's owner, writable by nobody else.

    Whoever could forge such a file could already rewrite the policy itself.
    The SHA-256 match (checked by the caller) ties it to the policy's current bytes.
    """
    return (
        compiled.st_mode & S_IFMT == S_IFREG
        and compiled.st_uid in (0, source.st_uid)
        and not compiled.st_mode & (S_IWGRP | S_IWOTH)
    )


# stat's constants (importing stat costs every call ~0.07 ms; tests/test_hot_path.py checks them)
S_IFMT, S_IFREG, S_IWGRP, S_IWOTH = 0o170000, 0o100000, 0o020, 0o002


def compile_policy(path: str) -> str:
    """Validate the TOML at `path` and write PATH.compiled (mode 0644); return its path.

    Raises PolicyError if the policy is invalid: only a valid policy is compiled.
    """
    import marshal
    import os
    import tempfile

    data = read_policy_file(path)
    overrides = parse_toml(data, path)
    Policy(merge(DEFAULTS, overrides, path), path, "")  # validates, as loading will again
    record = {"format": COMPILED_FORMAT, "sha256": sha256_hex(data), "overrides": overrides}
    target = path + COMPILED_SUFFIX
    fd, temporary = tempfile.mkstemp(prefix=".policy-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with open(fd, "wb") as handle:
            handle.write(marshal.dumps(record))
            os.fchmod(handle.fileno(), 0o644)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return target


def merge(
    defaults: dict[str, dict[str, object]], overrides: dict[str, object], path: str
) -> dict[str, dict[str, object]]:
    """Defaults with the file's keys on top, after checking every key and type."""
    merged = {section: dict(values) for section, values in defaults.items()}
    for section, values in overrides.items():
        if section not in SCHEMA:
            raise PolicyError(f"invalid policy {path}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise PolicyError(f"invalid policy {path}: [{section}] must be a table")
        for key, value in values.items():
            check_value(section, key, value, path)
            merged[section][key] = value
    return merged


def check_value(section: str, key: str, value: object, path: str) -> None:
    kind = SCHEMA[section].get(key)
    if kind is None:
        raise PolicyError(f"invalid policy {path}: unknown key {section}.{key}")
    if not VALIDATORS[kind](value):
        raise PolicyError(f"invalid policy {path}: {section}.{key} must be a {kind}")


def is_absolute_path(value: object) -> bool:
    return isinstance(value, str) and value.startswith("/") and "\x00" not in value


def is_string_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def is_name_prefix(value: object) -> bool:
    from gatekeeper.name_prefix import is_prefix

    return is_prefix(value)


VALIDATORS: dict[str, Callable[[object], bool]] = {
    ABSOLUTE_PATH: is_absolute_path,
    STRING: lambda value: isinstance(value, str),
    BOOLEAN: lambda value: isinstance(value, bool),
    COMMAND_LIST: is_string_list,
    PATH_LIST: lambda value: isinstance(value, list) and all(is_absolute_path(v) for v in value),
    MEMORY_SIZE: lambda value: value == "" or is_memory_size(value),
    LOG_SIZE: lambda value: value == "" or is_log_size(value),
    DISK_SIZE: lambda value: value == "" or is_log_size(value),
    CPU_COUNT: lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
    COUNT: lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= 0,
    POSITIVE_COUNT: lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= 1,
    STRING_LIST: is_string_list,
    SCOPE: lambda value: value in ("all", "owned"),
    PATTERN_LIST: lambda value: is_string_list(value) and all(is_plain_name(v, "*?[]") for v in value),
    LABEL_LIST: lambda value: is_string_list(value) and all(is_plain_name(v, "=") for v in value),
    DURATION: lambda value: value == "" or is_duration(value),
    CGROUP: lambda value: isinstance(value, str) and is_cgroup(value),
    SUBNET_LIST: lambda value: is_string_list(value) and all(is_subnet(v) for v in value),
    GROUP_NAME: lambda value: isinstance(value, str) and is_account_name(value),
    USER_PROFILES: lambda value: isinstance(value, dict) and all(
        is_account_name(user) and isinstance(profile, str) and is_profile_name(profile)
        for user, profile in value.items()),
    ADDRESS_LIST: lambda value: is_string_list(value) and all(is_ip_address(v) for v in value),
    ASK_LIST: lambda value: is_string_list(value) and all(is_askable(v) for v in value),
    PORT_RANGE_LIST: lambda value: is_string_list(value) and all(is_port_range(v) for v in value),
    NAME_PREFIX: is_name_prefix,
}


def is_account_name(value: str) -> bool:
    """A unix user or group name as useradd accepts it (no ':' or '/', not numeric only)."""
    allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
    return 0 < len(value) <= 32 and value[0] != "-" and not value.isdigit() and all(
        ch in allowed for ch in value.removesuffix("$"))


def is_duration(value: object) -> bool:
    from gatekeeper.units import go_duration

    return isinstance(value, str) and bool(go_duration(value))


def is_cgroup(value: str) -> bool:
    """"" (none), an absolute cgroupfs path or a systemd slice name; no '..' or odd bytes."""
    parts = value.strip("/").split("/")
    if value == "":
        return True
    return (value.startswith("/") or value.endswith(".slice")) and all(
        part and part not in (".", "..") and is_plain_name(part, ".-_@") for part in parts)


def is_subnet(value: str) -> bool:
    from ipaddress import ip_network

    try:
        ip_network(value, strict=True)
    except ValueError:
        return False
    return True


def is_askable(value: str) -> bool:
    from gatekeeper.approval import ASKABLE_RULES

    return value in ASKABLE_RULES or canonical_name(value) is not None


def is_ip_address(value: str) -> bool:
    from gatekeeper.vetting.ports import is_address

    return is_address(value)


def is_port_range(value: str) -> bool:
    from gatekeeper.vetting.ports import is_port_range as is_range

    return is_range(value)


def is_log_size(value: object) -> bool:
    from gatekeeper.units import log_size

    return isinstance(value, str) and bool(log_size(value))


def is_memory_size(value: object) -> bool:
    from gatekeeper.units import ram_in_bytes

    return isinstance(value, str) and bool(ram_in_bytes(value))


# The one definition of a profile name (--name on the ForceCommand line and in
# `gatekeeper authorized-key --name`): shell- and quote-safe inside command="...".
PROFILE_NAME_HINT = "1 to 255 of letters, digits, _ . - / : @"


def is_profile_name(value: str) -> bool:
    return is_plain_name(value, "")


def is_plain_name(value: str, extra: str) -> bool:
    """A profile, name pattern or label of docker-name characters (and `extra`):
    they go into engine filters and templates, so nothing that could quote out."""
    allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/:@" + extra
    return 0 < len(value) <= 255 and all(ch in allowed for ch in value)


def canonical_names(names: object) -> list[str]:
    out = []
    for name in strings(names):  # the schema checked a list of strings
        canonical = canonical_name(name)
        if canonical is None:
            raise PolicyError(f"invalid policy: unknown docker command {name!r}")
        out.append(canonical)
    return out


def check_state_dir(state_dir: str, roots: tuple[str, ...], source: str) -> None:
    """The in-flight registry must be out of every container's reach: outside the
    roots, or a top-level dot entry of one (which the path rule never lets through)."""
    for root in roots:
        prefix = root.rstrip("/") + "/"
        below = state_dir[len(prefix):] if state_dir.startswith(prefix) else None
        if state_dir == root or (below is not None and not below.startswith(".")):
            raise PolicyError(f"invalid policy {source}: paths.state_dir {state_dir!r} is reachable by "
                              f"containers under allowed root {root!r}; use a top-level dot entry such as "
                              f"{prefix}.gatekeeper, or a directory outside the roots")


def normalise_root(root: str) -> str:
    """A root as compared by the path rule: normalised, no trailing separator."""
    from gatekeeper.paths import normpath  # posixpath.normpath, without os

    return normpath(root)
