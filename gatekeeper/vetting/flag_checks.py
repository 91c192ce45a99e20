"""The special flag checks: values that are small languages of their own.

Each check mirrors how docker/cli v28.2.2 (run/create) or buildx v0.29.1
(build) parses the value, then allows only what cannot reach the host: a
host path must pass the path rule (gatekeeper.paths) and is handed to docker
in its resolved form, everything else is an allowlist. Anything we cannot
parse exactly like docker is refused as ambiguous.

A check is `(use, parsed, ctx) -> None`; it raises Denied naming the flag, or
asks the context to rewrite the value. SPECIAL_CHECKS maps spec check names
to checks; gatekeeper.vetting.flag_check looks there for the names its own
PLAIN_CHECKS lack (and imports this module only then).
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.grammar import spec
from gatekeeper.grammar.pflag import GO_FALSE, GO_TRUE
from gatekeeper.vetting.binds import add_bind, add_output
from gatekeeper.vetting.go_csv import read_fields, write_fields

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import NoReturn

    from gatekeeper.grammar.pflag import FlagUse, Parsed
    from gatekeeper.vetting.context import Context


def refuse(use: FlagUse, why: str) -> NoReturn:
    raise Denied(f"{use.spelled} {use.value!r} is not allowed: {why}", rule=f"flag-{use.name}")


def resolved_source(use: FlagUse, value: str, ctx: Context, what: str) -> str:
    """The host path rule, plus: the resolved path must re-split the same way."""
    resolved = ctx.host_path(value, f"{use.spelled} {what}")
    if any(c in resolved for c in ':,"'):
        # ':' would split a -v spec anew, ',' and '"' a CSV value.
        refuse(use, f"{what} resolves to {resolved!r}, whose ':', ',' or '\"' docker would split")
    return resolved


# --- -v/--volume SRC:DST[:MODE] ------------------------------------------------

# Modes the daemon accepts on Linux (volume/mounts/linux_parser.go), minus
# shared/rshared: those propagate mounts made in the container back to the host.
VOLUME_MODES = frozenset({
    "ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "slave", "rslave",
    "consistent", "cached", "delegated",
})  # fmt: skip

NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
NAME_REST = NAME_FIRST | frozenset("_.-")


def is_volume_name(name: str) -> bool:
    """The local driver's volume name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+."""
    return len(name) >= 2 and name[0] in NAME_FIRST and all(c in NAME_REST for c in name[1:])


def check_volume(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """-v: a bind source is host access (`-v /:/h` is root); named and anonymous volumes are not."""
    parts = volume_parts(use)
    if len(parts) == 1:
        return  # anonymous volume: a container path only
    source = parts[0]
    for mode in parts[2:]:
        check_volume_mode(use, mode)
    if source[0] in "/.":  # docker/cli: '/' and '.' make a bind ('.' made absolute by the CLI)
        resolved = resolved_source(use, source, ctx, "source")
        add_bind(ctx, resolved, f"{use.spelled} source")
        ctx.replace_value(use, ":".join([resolved, *parts[1:]]))
    elif source[0] == "~":
        refuse(use, "docker does not expand '~' in -v; write the absolute path")
    elif not is_volume_name(source):
        refuse(use, f"source {source!r} is neither a host path (/ or ./) nor a volume name")
    else:
        ctx.vetted.named_volumes.append(source)


def volume_parts(use: FlagUse) -> list[str]:
    """Split like the CLI and the daemon both do, refusing where they could disagree."""
    value = use.value or ""
    if not value or "\x00" in value:
        refuse(use, "empty volume spec")
    if ":" not in value:
        return [value]
    if value[0].isalpha() and value[1] == ":":
        # The CLI takes 'c:' as a Windows drive, the Linux daemon as a volume name.
        refuse(use, "a one-letter source before ':' reads as a Windows drive to the docker CLI")
    parts = value.split(":")
    if len(parts) > 3 or "" in parts:
        refuse(use, "expected SOURCE:TARGET[:MODE] with no empty part")
    return parts


def check_volume_mode(use: FlagUse, mode: str) -> None:
    for option in mode.split(","):
        if option not in VOLUME_MODES:
            refuse(use, f"volume option {option!r} is not allowed (shared propagation leaks mounts)")


# --- --mount CSV ---------------------------------------------------------------

# docker/cli v28.2.2 opts/mount.go: every key (lower-cased by the CLI) -> canonical key.
MOUNT_KEYS = {
    "type": "type", "source": "source", "src": "source",
    "target": "target", "dst": "target", "destination": "target",
    "readonly": "readonly", "ro": "readonly", "consistency": "consistency",
    "bind-propagation": "bind-propagation", "bind-nonrecursive": "bind-nonrecursive",
    "bind-recursive": "bind-recursive", "volume-subpath": "volume-subpath",
    "volume-nocopy": "volume-nocopy", "volume-label": "volume-label",
    "volume-driver": "volume-driver", "volume-opt": "volume-opt",
    "image-subpath": "image-subpath", "tmpfs-size": "tmpfs-size", "tmpfs-mode": "tmpfs-mode",
}  # fmt: skip

# Keys the CLI accepts without '=' (as true).
MOUNT_BARE_KEYS = frozenset({"readonly", "ro", "volume-nocopy", "bind-nonrecursive"})

MOUNT_REFUSED_KEYS = {
    "volume-driver": "a volume plugin can map any host path: a bind mount in disguise",
    "volume-opt": "local-driver options (type=none,o=bind,device=/) bind-mount any host path",
    "volume-subpath": "the daemon walks it on the host inside the volume, where containers plant symlinks",
    "image-subpath": "the daemon walks it on the host inside the image, which the agent builds (symlinks)",
}

# npipe is Windows-only; cluster is a swarm CSI volume (a plugin again).
MOUNT_TYPES = frozenset({"bind", "volume", "tmpfs", "image"})

# No shared/rshared: mounts made in the container would propagate to the host.
BIND_PROPAGATIONS = frozenset({"private", "rprivate", "slave", "rslave"})


def check_mount(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--mount: type=bind is host access, type=volume with driver options is a bind in disguise."""
    fields = read_fields(use.value or "", use.spelled)
    settings = mount_settings(use, fields)
    kind = settings.get("type", "volume").lower()  # the CLI lower-cases the type, default volume
    if kind not in MOUNT_TYPES:
        refuse(use, f"mount type {kind!r} is not allowed (bind, volume, tmpfs, image)")
    source = settings.get("source", "")
    if kind == "bind":
        resolved = bind_mount_source(use, settings, ctx)
        add_bind(ctx, resolved, f"{use.spelled} bind source")
        kept = [f for f in fields if f.partition("=")[0].lower() not in ("source", "src")]
        ctx.replace_value(use, write_fields([*kept, f"source={resolved}"]))
    elif kind == "volume" and source and not is_volume_name(source):
        refuse(use, f"volume source {source!r} is not a volume name")
    elif kind == "volume" and source:
        ctx.vetted.named_volumes.append(source)
    elif kind == "tmpfs" and source:
        refuse(use, "a tmpfs mount takes no source")
    elif kind == "image":
        from gatekeeper.vetting.images import allowed_patterns, check_reference

        # Stops: the files of an image [images] allowed keeps the agent from running (the
        # operator's own build, say) read through a mount of it into an allowed image's container.
        check_reference(source, allowed_patterns(ctx.policy), f"{use.spelled} image source")
        from gatekeeper.vetting.images import check_image_word

        # Stops: the operator's local image (not [images] shared) read through a mount.
        check_image_word(ctx, source, f"{use.spelled} image source")


def mount_settings(use: FlagUse, fields: list[str]) -> dict[str, str]:
    """Key -> value, keys case-folded and canonical, the last occurrence winning (as docker)."""
    settings: dict[str, str] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.lower()
        if not eq and key not in MOUNT_BARE_KEYS:
            refuse(use, f"field {field!r} must be key=value")
        canonical = MOUNT_KEYS.get(key)
        if canonical is None:
            refuse(use, f"unknown mount key {key!r}")
        if canonical in MOUNT_REFUSED_KEYS:
            refuse(use, f"{key}: {MOUNT_REFUSED_KEYS[canonical]}")
        settings[canonical] = value if eq else "true"
    return settings


def bind_mount_source(use: FlagUse, settings: dict[str, str], ctx: Context) -> str:
    propagation = settings.get("bind-propagation", "rprivate").lower()
    if propagation not in BIND_PROPAGATIONS:
        refuse(use, f"bind-propagation {propagation!r} would propagate container mounts to the host")
    source = settings.get("source", "")
    if not source.startswith(("/", ".")):
        # The CLI makes only '.'-relative sources absolute; the daemon rejects the rest.
        refuse(use, f"bind source {source!r} must be an absolute or ./relative host path")
    return resolved_source(use, source, ctx, "bind source")


# --- --security-opt ------------------------------------------------------------

# The only (key, value) pairs allowed: they keep or tighten docker's defaults.
SECURITY_OPTS_ALLOWED = frozenset({("seccomp", "builtin"), ("apparmor", "docker-default")})

SECURITY_OPT_WHY = {
    "seccomp": "only seccomp=builtin: 'unconfined' drops the syscall filter and a profile file "
               "(read from the host by the CLI) can allow every syscall",
    "apparmor": "only apparmor=docker-default: 'unconfined' or another host profile loosens confinement",
    "label": "SELinux: 'disable' drops confinement, type/user/role/level pick another domain "
             "or another container's categories",
    "disable": "a bare 'disable' turns SELinux labelling off for the container",
    "systempaths": "systempaths=unconfined unmasks /proc and /sys (kcore, sysrq-trigger, ...)",
    "no-new-privileges": "no-new-privileges may only be turned on; false lets setuid binaries gain root",
    "writable-cgroups": "writable cgroups let the container rewrite its own resource limits and devices",
}  # fmt: skip


def security_opt_pair(value: str) -> tuple[str, str | None]:
    """docker/cli parseSecurityOpts: 'k=v', else 'k:v'; a bare no-new-privileges has no value."""
    key, eq, rest = value.partition("=")
    if not eq and key != "no-new-privileges":
        key, eq, rest = value.partition(":")
    return key, (rest if eq else None)


def check_security_opt(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--security-opt: only options that keep the default confinement (no unconfined, no label games)."""
    key, value = security_opt_pair(use.value or "")
    if key == "no-new-privileges" and (value is None or value in GO_TRUE):
        return
    if (key, value) in SECURITY_OPTS_ALLOWED:
        return
    refuse(
        use,
        SECURITY_OPT_WHY.get(
            key, "unknown security option (only no-new-privileges, seccomp=builtin, apparmor=docker-default)"
        ),
    )


# --- namespaces ----------------------------------------------------------------

# Per flag, the modes that keep the container in its own namespace. Anything
# else ("host", "container:<id>", unknown) is refused.
NAMESPACE_MODES = {
    "pid": frozenset({""}),
    "ipc": frozenset({"", "none", "private", "shareable"}),
    "uts": frozenset({""}),
    "userns": frozenset({""}),
    "cgroupns": frozenset({"", "private"}),
}

NAMESPACE_WHY = {
    "pid": "the host PID namespace shows host processes to signal and ptrace",
    "ipc": "host IPC shares the host's shared memory and semaphores",
    "uts": "the host UTS namespace lets the container rename the host",
    "userns": "userns=host turns off user-namespace remapping: container root is host root",
    "cgroupns": "the host cgroup namespace exposes the host's cgroup tree",
}


def check_namespace(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--pid/--ipc/--uts/--userns/--cgroupns: no host namespace, no joining another container's."""
    value = use.value or ""
    if value in NAMESPACE_MODES.get(use.flag.long, frozenset()):
        return
    if value.startswith("container:"):
        refuse(use, "joins another container's namespace (one the agent may not own)")
    refuse(use, NAMESPACE_WHY.get(use.flag.long, "unknown namespace mode"))


# --- --network/--net -----------------------------------------------------------

# docker/cli v28.2.2 opts/network.go: long-syntax keys we allow. driver-opt is
# left out: endpoint driver options reach the network driver (sysctls, ifname);
# mac-address and link-local-ip too (gatekeeper.vetting.addresses: the engine
# picks them). ip and ip6 must lie inside the policy's [network] subnets.
NETWORK_LONG_KEYS = frozenset({"name", "alias", "ip", "ip6", "gw-priority"})
NETWORK_LONG_ADDRESSES = frozenset({"ip", "ip6"})


def check_network(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--network: 'host' gives the host's interfaces and loopback services, 'container:' another's."""
    value = use.value or ""
    target = network_long_target(use, value, ctx) if is_network_long_syntax(value) else value
    lowered = target.strip().lower()
    if lowered == "host":
        refuse(use, "the host network namespace reaches every service on the host's loopback")
    if lowered.startswith("container:"):
        refuse(use, "joins another container's network namespace (one the agent may not own)")
    if not (target in ("bridge", "none", "default") or network_name_ok(target)):
        refuse(use, "expected bridge, none, default or a network name")


WORD_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def is_network_long_syntax(value: str) -> bool:
    """The CLI's own test: regexp `\\w+=\\w+(,\\w+=\\w+)*` anywhere in the value (Go's \\w is
    ASCII), which matches wherever an '=' has a word character on each side. Without `re`:
    its import costs ~6 ms (enum, functools, ...), and `--network NAME` is an everyday flag."""
    return any(value[i - 1] in WORD_CHARACTERS and value[i + 1] in WORD_CHARACTERS
               for i in range(1, len(value) - 1) if value[i] == "=")


def network_long_target(use: FlagUse, value: str, ctx: Context) -> str:
    target = ""
    for field in read_fields(value, use.spelled):
        key, eq, rest = field.lower().partition("=")  # the CLI folds the whole field
        key = key.strip()
        if not eq or key not in NETWORK_LONG_KEYS:
            refuse(use, f"network option {key!r} is not allowed")
        if key == "name":
            target = rest.strip()
        elif key in NETWORK_LONG_ADDRESSES:
            from gatekeeper.vetting.addresses import check_address

            try:
                check_address(rest, f"{use.spelled} {key}=", ctx.policy)
            except Denied as denial:
                raise Denied(denial.message, rule=f"flag-{use.name}") from None
    return target


def network_name_ok(name: str) -> bool:
    return len(name) >= 1 and name[0] in NAME_FIRST and all(c in NAME_REST for c in name)


# --- --sysctl ------------------------------------------------------------------

# Kubernetes' "safe" sysctls: namespaced per container and without effect on
# the host or other containers. docker itself allows all of net.* and the IPC
# ones, some of which tune host-shared resources; we keep to this short list.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ping_group_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_fin_timeout",
    }
)


def check_sysctl(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--sysctl: kernel knobs outside the safe namespaced list can tune or break the host."""
    key, eq, _ = (use.value or "").partition("=")
    if not eq or key not in SAFE_SYSCTLS:
        refuse(use, f"sysctl {key!r} is not in the safe list ({', '.join(sorted(SAFE_SYSCTLS))})")


# --- --ulimit NAME=SOFT[:HARD] ---------------------------------------------------

# The names docker/go-units ParseUlimit knows, as the CLI spells them; the engine takes any case
# (it asks the runtime for "RLIMIT_" + the name in capitals).
ULIMIT_NAMES = frozenset({
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
})  # fmt: skip
# Limits that let the container's processes schedule themselves above the host's: refused unless 0.
PRIORITY_ULIMITS = {
    "rtprio": "lets the container's processes take real-time scheduling (SCHED_FIFO/RR), which "
              "CPU caps (--cpus, cpu.max) do not bound on kernels without RT group scheduling "
              "(Debian's): a busy loop starves the host",
    "nice": "lets the container's processes raise their scheduling priority above the default",
}
GO_INT = frozenset("0123456789")


def ulimit_refusal(name: str, soft: int, hard: int) -> str | None:
    """Why the engine must not get this ulimit, or None; `name` in any case, as the engine reads it."""
    key = name.lower()
    if key not in ULIMIT_NAMES:
        return unknown_ulimit(name)
    if key in PRIORITY_ULIMITS and (soft != 0 or hard != 0):
        return f"{key} {PRIORITY_ULIMITS[key]}; only {key}=0 is allowed"
    return None


def unknown_ulimit(name: str) -> str:
    return f"ulimit {name!r} is not one docker knows ({', '.join(sorted(ULIMIT_NAMES))})"


def go_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64), or None where Go would fail (Python's int() is laxer)."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not set(digits) <= GO_INT:
        return None
    number = int(text)
    return number if -(1 << 63) <= number < (1 << 63) else None


def check_ulimit(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--ulimit NAME=SOFT[:HARD] read as go-units ParseUlimit reads it (names in lower case
    only, HARD defaults to SOFT); see ulimit_refusal."""
    name, eq, limits = (use.value or "").partition("=")
    values = [go_int64(part) for part in limits.split(":")]
    if not eq or len(values) > 2 or None in values:
        refuse(use, "not NAME=SOFT[:HARD] with whole numbers")
    why = ulimit_refusal(name, values[0] or 0, values[-1] or 0) if name.islower() else unknown_ulimit(name)
    if why:
        refuse(use, why)

# --- build -o/--output ---------------------------------------------------------

OUTPUT_REFUSED = {
    "registry": "pushes the image to a registry: 'docker push' by another name",
    "tar": "writes the image as a tarball: 'docker save' by another name",
    "oci": "writes the image as an OCI tarball: 'docker save' by another name",
    "docker": "writes or loads a docker tarball: 'docker save' by another name (use --load)",
}


def check_build_output(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """-o: a local dest is a host directory the CLI writes into; pushes and tarballs are refused."""
    value = use.value or ""
    fields = read_fields(value, use.spelled)
    if len(fields) == 1 and fields[0] == value and not value.startswith("type="):
        if value == "-":
            refuse(use, OUTPUT_REFUSED["tar"] + " (to stdout)")
        dest = resolved_source(use, value, ctx, "destination")
        add_output(ctx, dest, f"{use.spelled} destination")
        ctx.replace_value(use, write_fields(["type=local", f"dest={dest}"]))
        return
    kind, attrs = build_attrs(use, fields)
    if kind in OUTPUT_REFUSED:
        refuse(use, OUTPUT_REFUSED[kind])
    if kind == "local":
        rewrite_build_paths(use, parsed, ctx, fields, attrs, ("dest",))
    elif kind == "image":
        check_image_output(use, attrs)
    elif kind != "cacheonly":
        refuse(use, f"output type {kind!r} is not allowed (local, image, cacheonly)")


def check_image_output(use: FlagUse, attrs: dict[str, str]) -> None:
    push = attrs.get("push", "false")
    if push not in GO_FALSE:
        refuse(use, OUTPUT_REFUSED["registry"])
    if "dest" in attrs:
        refuse(use, "the image exporter takes no dest")


def build_attrs(use: FlagUse, fields: list[str]) -> tuple[str, dict[str, str]]:
    """buildx: every field is key=value, keys lower-cased (and trimmed); 'type' apart."""
    attrs: dict[str, str] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        if not eq:
            refuse(use, f"field {field!r} must be key=value")
        attrs[key.strip().lower()] = value
    return attrs.pop("type", ""), attrs


def rewrite_build_paths(
    use: FlagUse,
    parsed: Parsed,
    ctx: Context,
    fields: list[str],
    attrs: dict[str, str],
    keys: tuple[str, ...],
) -> None:
    """Path-check the named attributes and pass docker their resolved forms."""
    if not any(k in attrs for k in keys):
        refuse(use, f"needs {' or '.join(keys)}=PATH")
    if attrs.get("dest") == "-":
        refuse(use, "dest=- writes a tarball to stdout: 'docker save' by another name")
    resolved = {k: resolved_source(use, attrs[k], ctx, k) for k in keys if k in attrs}
    if "dest" in resolved:  # -o type=local and --cache-to type=local: the CLI writes there
        add_output(ctx, resolved["dest"], f"{use.spelled} dest")
    kept = [f for f in fields if f.partition("=")[0].strip().lower() not in resolved]
    ctx.replace_value(use, write_fields([*kept, *(f"{k}={v}" for k, v in resolved.items())]))


# --- build --secret ------------------------------------------------------------


def check_build_secret(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--secret: the CLI reads the source file from the host and hands it to the build."""
    fields = read_fields(use.value or "", use.spelled)
    attrs = secret_attrs(use, fields)
    if attrs.get("type", "file") != "file" or "env" in attrs:
        refuse(use, "env secrets read the gatekeeper's environment, not the agent's; use src=PATH")
    if not attrs.get("id"):
        refuse(use, "needs id=NAME")
    if not attrs.get("source"):
        refuse(use, "needs src=PATH (an id alone falls back to an env variable or a file named by the id)")
    source = resolved_source(use, attrs["source"], ctx, "src")
    ctx.replace_value(use, write_fields([f"id={attrs['id']}", f"src={source}"]))


SECRET_KEYS = {"type": "type", "id": "id", "source": "source", "src": "source", "env": "env"}


def secret_attrs(use: FlagUse, fields: list[str]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        canonical = SECRET_KEYS.get(key.lower())
        if not eq or canonical is None:
            refuse(use, f"field {field!r}: expected id=, src=, type=file")
        attrs[canonical] = value
    return attrs


# --- build --build-context name=VALUE ------------------------------------------

# Prefixes buildx treats as something other than a local directory.
REMOTE_CONTEXT_WHY = {
    "oci-layout://": "reads an OCI layout directory from the host",
    "target:": "names a bake target, not a context",
    "git@": "remote git contexts are fetched by the builder or the CLI (git on the host)",
    "github.com/": "remote git contexts are fetched by the builder or the CLI (git on the host)",
}


def check_build_context(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--build-context: a local directory is host data sent to the build; images are fine."""
    name, eq, value = (use.value or "").partition("=")
    if not eq or not name or not value:
        refuse(use, "expected NAME=VALUE")
    if value.startswith("docker-image://"):
        return  # an image reference: a pull, nothing host-side
    refuse_remote(use, value)
    resolved = resolved_source(use, value, ctx, "context")
    ctx.snapshot_value(use, name, resolved)  # read as a snapshot of the checked directory


def refuse_remote(use: FlagUse, value: str) -> None:
    for prefix, why in REMOTE_CONTEXT_WHY.items():
        if value.startswith(prefix):
            refuse(use, why)
    if "://" in value:
        refuse(use, "remote contexts (git, http) are fetched by the builder or by git on the host")


# --- build --cache-from/--cache-to ---------------------------------------------

# Per direction, the cache types allowed and the host-path attributes each has.
CACHE_TYPES = {
    "cache-from": {"registry": (), "local": ("src",)},
    "cache-to": {"inline": (), "local": ("dest",)},
}

CACHE_REFUSED = {
    "registry": "exports cache to a registry: a push by another name",
    "gha": "reads CI tokens from the environment and talks to GitHub",
    "s3": "reads AWS credentials from the environment or ~/.aws",
    "azblob": "reads Azure credentials from the environment",
}


def check_build_cache(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--cache-from/--cache-to: a local cache is a host directory; other backends push or read credentials."""
    value = use.value or ""
    allowed = CACHE_TYPES[use.flag.long]
    fields = read_fields(value, use.spelled)
    if "=" not in value:
        kind, attrs = "registry", dict[str, str]()  # buildx: bare references are registry caches
    else:
        kind, attrs = build_attrs(use, fields)
    if kind not in allowed:
        refuse(use, CACHE_REFUSED.get(kind, f"cache type {kind!r} is not allowed ({', '.join(allowed)})"))
    if allowed[kind]:
        rewrite_build_paths(use, parsed, ctx, fields, attrs, ("src", "dest"))


# --- build --network -----------------------------------------------------------

def check_build_network(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """build --network: RUN steps on the host network reach host-local services; any other
    than the default bridge is left out of the steps' cache keys (gatekeeper.build_cache)."""
    from gatekeeper.build_cache import HOST_NETWORKS, check_network

    if (use.value or "").startswith(HOST_NETWORKS):
        refuse(use, "RUN steps may use only the default network")
    check_network(use.value or "", use.spelled)


def check_address(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--ip/--ip6/--gateway/--ip-range/--aux-address (gatekeeper.vetting.addresses)."""
    from gatekeeper.vetting.addresses import check_flag_address

    check_flag_address(use, parsed, ctx)


def check_subnet(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """network create --subnet: a host route to a new bridge (gatekeeper.vetting.addresses)."""
    from gatekeeper.vetting.addresses import check_flag_subnet

    check_flag_subnet(use, parsed, ctx)


def check_publish(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """-p/--publish: host address and port inside policy [ports] (gatekeeper.vetting.ports)."""
    from gatekeeper.vetting.ports import check_publish as check

    check(use, parsed, ctx)


def check_publish_all(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    from gatekeeper.vetting.ports import check_publish_all as check

    check(use, parsed, ctx)


SPECIAL_CHECKS = {
    spec.ADDRESS: check_address,
    spec.PUBLISH: check_publish,
    spec.PUBLISH_ALL: check_publish_all,
    spec.SUBNET: check_subnet,
    spec.VOLUME: check_volume,
    spec.MOUNT: check_mount,
    spec.SECURITY_OPT: check_security_opt,
    spec.NAMESPACE: check_namespace,
    spec.NETWORK: check_network,
    spec.SYSCTL: check_sysctl,
    spec.ULIMIT: check_ulimit,
    spec.BUILD_OUTPUT: check_build_output,
    spec.BUILD_SECRET: check_build_secret,
    spec.BUILD_CONTEXT: check_build_context,
    spec.BUILD_CACHE: check_build_cache,
    spec.BUILD_NETWORK: check_build_network,
}
