"""Rules for a rendered compose project, as data.

Input is what `docker compose config --format json` (compose v2.40.3) prints:
interpolated, normalised (long volume syntax, absolute paths), env files
inlined, `include`/`extends` merged. Every key is allowlisted: a key not in
these tables is refused, so a compose-spec addition is denied until someone
reads what it does and adds a line here. Extension keys (`x-*`) are removed
from the model we run: compose interprets some of them.

Each table maps a key to (check, why). The why is the one-line attack the
rule stops; it is part of the denial message. Checks that find host paths
resolve them with the host-path rule and write the resolved form back into
the model, so docker runs on the path we vetted, not the author's spelling.

Strings in the rendered model escape `$` as `$$` (compose interpolates the
model again when it reads it back on stdin); host paths are unescaped before
resolving and escaped again when written back.
"""

# One rule per line keeps each refusal's "why" beside its key; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

from collections.abc import Callable

from gatekeeper.errors import Denied
from gatekeeper.grammar.docker_flags import OOM_WHY

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

# A resolver: (host path as rendered, what to name in a denial) -> resolved path.
Resolver = Callable[[str, str], str]

OK = "ok"  # allowed, value not inspected
DENY_SET = "deny-if-set"  # refused unless empty/absent (cap_add: [] is fine)
DENY_TRUE = "deny-true"  # refused when true
NOT_NEGATIVE = "not-negative"  # refused unless absent or a whole number >= 0
NAMESPACE = "namespace"  # pid/ipc/uts/cgroup: the container's own namespace only
NETWORK_MODE = "network-mode"  # no host, container:<id> or service:<name> network
VOLUMES = "volumes"  # service volumes: bind sources follow the host-path rule
BUILD = "build"  # build section: BUILD_KEYS
SECURITY_OPT = "security-opt"
SYSCTLS = "sysctls"
ULIMITS = "ulimits"  # no real-time or raised scheduling priority
LOGGING = "logging"
BLKIO = "blkio"
DEPLOY = "deploy"
ISOLATION = "isolation"
FILES = "files"  # env_file/label_file left in a model: each path follows the rule
SERVICE_NETWORKS = "service-networks"  # per-service network attachments

_NS_WHY = "sharing the host's or another container's namespace escapes the container's isolation"
_DEVICE_WHY = "gives the container a host device node (disks, /dev/mem, GPUs)"
_HOOK_WHY = "lifecycle hooks run commands, possibly privileged, outside the vetted service definition"

# fmt: off

# compose-spec service keys, as compose v2.40.3 renders them.
SERVICE_KEYS: dict[str, tuple[str, str]] = {
    "annotations": (DENY_SET, "OCI annotations reach the runtime; some (CDI, nvidia) turn into host devices"),
    "attach": (OK, ""),
    "blkio_config": (BLKIO, "per-device throttles name host device paths"),
    "build": (BUILD, ""),
    "cap_add": (DENY_SET, "adds kernel capabilities (SYS_ADMIN, SYS_MODULE, ...) that break out of the container"),
    "cap_drop": (OK, ""),
    "cgroup": (NAMESPACE, _NS_WHY),
    "cgroup_parent": (DENY_SET, "places the container in an arbitrary host cgroup, escaping the limits docker sets"),
    "command": (OK, ""),
    "configs": (OK, ""),  # references; the top-level configs are checked
    "container_name": (OK, ""),
    "cpu_count": (OK, ""),
    "cpu_percent": (OK, ""),
    "cpu_period": (OK, ""),
    "cpu_quota": (OK, ""),
    "cpu_rt_period": (OK, ""),
    "cpu_rt_runtime": (OK, ""),
    "cpu_shares": (OK, ""),
    "cpus": (OK, ""),
    "cpuset": (OK, ""),
    "credential_spec": (DENY_SET, "Windows credential specs are read from host files or the registry"),
    "depends_on": (OK, ""),
    "deploy": (DEPLOY, "device reservations hand host devices (GPUs) to the service"),
    "develop": (DENY_SET, "watch syncs host files into containers and rebuilds on change, outside the vetted project"),
    "device_cgroup_rules": (DENY_SET, "lets the container open host devices by major/minor number"),
    "devices": (DENY_SET, _DEVICE_WHY),
    "dns": (OK, ""),
    "dns_opt": (OK, ""),
    "dns_search": (OK, ""),
    "domainname": (OK, ""),
    "entrypoint": (OK, ""),
    "env_file": (FILES, "the CLI reads the file into the container's environment"),
    "environment": (OK, ""),
    "expose": (OK, ""),
    "external_links": (OK, ""),
    "extra_hosts": (OK, ""),
    "gpus": (DENY_SET, _DEVICE_WHY),
    "group_add": (OK, ""),
    "healthcheck": (OK, ""),
    "hostname": (OK, ""),
    "image": (OK, ""),
    "init": (OK, ""),
    "ipc": (NAMESPACE, _NS_WHY),
    "isolation": (ISOLATION, "selects another isolation technology than the default"),
    "label_file": (FILES, "the CLI reads the file into the container's labels"),
    "labels": (OK, ""),
    "links": (OK, ""),
    "logging": (LOGGING, "other log drivers make dockerd read host files (syslog-tls-*, splunk-cacert) or dial host sockets"),
    "mac_address": (DENY_SET, "a chosen MAC can clone a neighbour's and take its frames on the bridge (the engine picks one)"),
    "mem_limit": (OK, ""),
    "mem_reservation": (OK, ""),
    "mem_swappiness": (OK, ""),
    "memswap_limit": (OK, ""),
    "models": (DENY_SET, "model runners are started on the host by Docker Model Runner, outside any container"),
    "network_mode": (NETWORK_MODE, _NS_WHY),
    "networks": (SERVICE_NETWORKS, "endpoint driver options reach the network driver (sysctls, interface names)"),
    "oom_kill_disable": (DENY_TRUE, OOM_WHY),
    "oom_score_adj": (NOT_NEGATIVE, OOM_WHY),
    "pid": (NAMESPACE, _NS_WHY),
    "pids_limit": (OK, ""),
    "platform": (OK, ""),
    "ports": (OK, ""),
    "post_start": (DENY_SET, _HOOK_WHY),
    "pre_stop": (DENY_SET, _HOOK_WHY),
    "privileged": (DENY_TRUE, "a privileged container has every capability and all host devices: host root"),
    "profiles": (OK, ""),
    "provider": (DENY_SET, "compose runs a host binary for provider services, outside any container"),
    "pull_policy": (OK, ""),
    "read_only": (OK, ""),
    "restart": (OK, ""),
    "runtime": (DENY_SET, "selects another OCI runtime the daemon knows, possibly one without confinement"),
    "scale": (OK, ""),
    "secrets": (OK, ""),  # references; the top-level secrets are checked
    "security_opt": (SECURITY_OPT, "weakens confinement (seccomp, AppArmor, SELinux) or makes the CLI read a host file"),
    "shm_size": (OK, ""),
    "stdin_open": (OK, ""),
    "stop_grace_period": (OK, ""),
    "stop_signal": (OK, ""),
    "storage_opt": (OK, ""),
    "sysctls": (SYSCTLS, "only a short list of namespaced kernel settings is safe to set from a container"),
    "tmpfs": (OK, ""),
    "tty": (OK, ""),
    "ulimits": (ULIMITS, "real-time or raised scheduling priority escapes the CPU caps and starves the host"),
    "use_api_socket": (DENY_TRUE, "bind-mounts the Docker API socket (root on the host) and registry credentials"),
    "user": (OK, ""),
    "userns_mode": (NAMESPACE, _NS_WHY),
    "uts": (NAMESPACE, _NS_WHY),
    "volumes": (VOLUMES, ""),
    "volumes_from": (DENY_SET, "inherits another container's mounts, including its host bind mounts"),
    "working_dir": (OK, ""),
}

_BUILD_PATH = "build-path"
_BUILD_DOCKERFILE = "build-dockerfile"
_BUILD_CONTEXTS = "build-contexts"
_BUILD_CACHE_FROM = "build-cache-from"
_BUILD_NETWORK = "build-network"

# compose-spec build keys.
BUILD_KEYS: dict[str, tuple[str, str]] = {
    "context": (_BUILD_PATH, "the CLI sends this host directory to the builder"),
    "dockerfile": (_BUILD_DOCKERFILE, "the CLI reads the Dockerfile from the host"),
    # Stops: a Dockerfile nobody checked built in place of the one that was. gatekeeper builds with
    # the classic builder (execution.child_environment), and compose's classic builder ignores
    # dockerfile_inline: it builds <context>/Dockerfile, while the checks read the inline text.
    "dockerfile_inline": (DENY_SET, "compose's classic builder, the one gatekeeper runs, ignores it and "
                          "builds <context>/Dockerfile instead; write the Dockerfile into the build context"),
    "args": (OK, ""),
    "ssh": (DENY_SET, "forwards the host's SSH agent socket or host key files into the build"),
    "cache_from": (_BUILD_CACHE_FROM, "type=local reads a host directory into the build"),
    "cache_to": (DENY_SET, "writes the build cache to a host directory or pushes it to a registry"),
    "additional_contexts": (_BUILD_CONTEXTS, "the CLI sends these host directories to the builder"),
    "network": (_BUILD_NETWORK, "RUN steps on the host network reach host-only services"),
    "secrets": (OK, ""),  # references; the top-level secrets are checked
    "entitlements": (DENY_SET, "network.host and security.insecure entitlements lift the build sandbox"),
    "privileged": (DENY_TRUE, "an insecure (privileged) build sandbox is host root during RUN steps"),
    "extra_hosts": (OK, ""),
    "isolation": (ISOLATION, "selects another isolation technology than the default"),
    "labels": (OK, ""),
    "no_cache": (OK, ""),
    "no_cache_filter": (OK, ""),
    "pull": (OK, ""),
    "platforms": (OK, ""),
    "shm_size": (OK, ""),
    "tags": (OK, ""),
    "target": (OK, ""),
    "ulimits": (OK, ""),
    "provenance": (OK, ""),
    "sbom": (OK, ""),
}

_TOP_VOLUME_DRIVER = "volume-driver"
_TOP_NETWORK_DRIVER = "network-driver"
_TOP_NETWORK_NAME = "network-name"
_TOP_FILE = "file"

# Top-level volumes: a named volume is fine; options turn it into a host mount.
VOLUME_KEYS: dict[str, tuple[str, str]] = {
    "name": (OK, ""),
    "external": (OK, ""),
    "labels": (OK, ""),
    "driver": (_TOP_VOLUME_DRIVER, "a volume plugin can map any host path into the container: a bind mount in disguise"),
    "driver_opts": (DENY_SET, "local driver options (type=none, o=bind, device=/) mount any host path: a bind mount in disguise"),
}

NETWORK_KEYS: dict[str, tuple[str, str]] = {
    "name": (_TOP_NETWORK_NAME, "the 'host' network gives containers the host's network stack"),
    "external": (OK, ""),
    "labels": (OK, ""),
    "internal": (OK, ""),
    "attachable": (OK, ""),
    "enable_ipv4": (OK, ""),
    "enable_ipv6": (OK, ""),
    "ipam": (OK, ""),  # subnets against policy [network] (gatekeeper.vetting.addresses)
    "driver": (_TOP_NETWORK_DRIVER, "macvlan/ipvlan/host drivers put containers on the host's interfaces"),
    "driver_opts": (DENY_SET, "driver options can attach a network to existing host bridges and interfaces"),
}

# Top-level configs and secrets: `file:` is a host file mounted into the container.
FILE_OBJECT_KEYS: dict[str, tuple[str, str]] = {
    "name": (OK, ""),
    "external": (OK, ""),
    "labels": (OK, ""),
    "file": (_TOP_FILE, "the host file is mounted into the container"),
    "environment": (OK, ""),
    "content": (OK, ""),
    "driver": (DENY_SET, "swarm config/secret drivers are not used by compose"),
    "driver_opts": (DENY_SET, "swarm config/secret drivers are not used by compose"),
    "template_driver": (DENY_SET, "swarm template drivers are not used by compose"),
}

TOP_LEVEL_KEYS: dict[str, tuple[str, str]] = {
    "name": (OK, ""),
    "services": (OK, ""),  # each service is checked below
    "networks": (OK, ""),
    "volumes": (OK, ""),
    "configs": (OK, ""),
    "secrets": (OK, ""),
    "models": (DENY_SET, "model runners are started on the host by Docker Model Runner, outside any container"),
}

# fmt: on

# Keys whose files compose reads while rendering (and inlines into environment and labels).
FILE_KEYS = ("env_file", "label_file")

# Compose keys -> docker run flags: the allowed modes and reasons are the run
# rules' (gatekeeper.vetting.flag_checks.NAMESPACE_MODES), so both agree.
NAMESPACE_FLAGS = {"pid": "pid", "ipc": "ipc", "uts": "uts", "userns_mode": "userns", "cgroup": "cgroupns"}
# network_mode prefixes that join another network stack than a docker network.
SHARED_NETWORK_PREFIXES = ("container:", "service:")

LOCAL_LOG_DRIVERS = frozenset({"json-file", "local", "none"})
LOCAL_VOLUME_DRIVERS = frozenset({"local"})
LOCAL_NETWORK_DRIVERS = frozenset({"bridge"})
HOST_NETWORK_NAMES = frozenset({"host"})

# Service volume types: binds follow the host-path rule, others are contained.
VOLUME_TYPES: dict[str, str] = {
    "bind": "bind",
    "volume": OK,
    "tmpfs": OK,
    "image": OK,
    "npipe": "a Windows named pipe of the host",
    "cluster": "cluster volumes are swarm-only",
}

# Keys of one long-form service volume, and what each nested option may be.
# Same rules as `docker run --mount`: propagation that reaches back to the host
# and subpaths the daemon walks on the host (where symlinks can be planted) are refused.
VOLUME_ENTRY_KEYS = frozenset({"type", "source", "target", "read_only", "consistency",
                               "bind", "volume", "tmpfs", "image"})
SAFE_BIND_PROPAGATIONS = frozenset({"private", "rprivate", "slave", "rslave"})
BIND_OPTION_KEYS = frozenset({"propagation", "create_host_path", "selinux"})
VOLUME_OPTION_KEYS = frozenset({"nocopy"})  # not subpath
TMPFS_OPTION_KEYS = frozenset({"size", "mode"})
IMAGE_OPTION_KEYS: frozenset[str] = frozenset()  # not subpath

# additional_contexts values that do not name a host directory.
REMOTE_CONTEXT_PREFIXES = ("docker-image://", "service:", "target:")


class ProjectCheck:
    """Walks one rendered model, checking every key and resolving host paths."""

    __slots__ = ("resolve",)

    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve

    def host_path(self, value: object, what: str) -> str:
        """Resolve a rendered (dollar-escaped) host path; returns it escaped again."""
        if not isinstance(value, str):
            raise Denied(f"{what}: expected a host path, got {type(value).__name__}", rule="compose-model")
        return self.resolve(value.replace("$$", "$"), what).replace("$", "$$")


def vet_project(model: dict[str, Any], resolve: Resolver) -> None:
    """Refuse anything in `model` the rules do not allow; rewrite host paths in place."""
    check = ProjectCheck(resolve)
    check_keys(model, TOP_LEVEL_KEYS, "compose project", check)
    for name, service in mapping(model.get("services"), "services").items():
        check_keys(mapping(service, f"service {name!r}"), SERVICE_KEYS, f"service {name!r}", check)
    for section, keys in (
        ("volumes", VOLUME_KEYS),
        ("networks", NETWORK_KEYS),
        ("configs", FILE_OBJECT_KEYS),
        ("secrets", FILE_OBJECT_KEYS),
    ):
        for name, item in mapping(model.get(section), section).items():
            where = f"top-level {section[:-1]} {name!r}"
            check_keys(mapping(item, where), keys, where, check)


def file_references(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, path) of every env_file and label_file in the raw (uninterpolated) model: the
    full render reads these files into the model and drops the keys, so this is where their
    paths can be seen (gatekeeper.vetting.compose_render stages them). A variable in such a
    path is refused: we could not tell which file the full render reads."""
    out = []
    for name, item in mapping(raw.get("services"), "services").items():
        service = mapping(item, f"service {name!r}")
        for key in FILE_KEYS:
            where = f"compose service {name!r}: {key}"
            for entry in sequence(service.get(key), where):
                path = entry.get("path") if isinstance(entry, dict) else entry
                if not isinstance(path, str) or "$" in path:
                    refuse(where, path, "variables in env_file/label_file paths are not supported")
                else:
                    out.append((where, path))
    return out


def check_keys(item: dict[str, Any], keys: dict[str, tuple[str, str]], where: str, check: ProjectCheck) -> None:
    for key in list(item):
        if key.startswith("x-"):
            del item[key]  # extensions: compose reads some (x-develop is the old develop); none need to run
            continue
        rule = keys.get(key)
        if rule is None:
            raise Denied(
                f"compose {where}: key {key!r} is not allowed (unknown to gatekeeper)",
                rule="compose-unknown-key",
            )
        kind, why = rule
        checked = VALUE_CHECKS[kind](item[key], f"compose {where}: {key}", why, check)
        if checked is not None:
            item[key] = checked


def mapping(value: object, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Denied(f"compose {what}: expected a mapping", rule="compose-model")
    return value


def sequence(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Denied(f"{what}: expected a list", rule="compose-model")
    return value


def key_of(where: str) -> str:
    """'compose service 'a': build: network' -> 'network'; '...: blkio_config.x' -> 'blkio_config'."""
    return where.rsplit(": ", 1)[-1].split(" ", maxsplit=1)[0].split(".", maxsplit=1)[0]


def refuse(where: str, value: object, why: str) -> None:
    """Deny naming where (service and key), the value and the attack; rule id from the key."""
    raise Denied(f"{where}: {shown(value)} is not allowed: {why}", rule="compose-" + key_of(where))


def shown(value: object) -> str:
    """A short printable form of a refused value: strings as-is, lists joined, else 'set'."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ", ".join(value)
    text = value if isinstance(value, str) else "set"
    from gatekeeper.printable import printable

    return printable(text, 80)


# Each check: (value, where, why, check) -> replacement value or None (unchanged).


def check_ok(value: object, where: str, why: str, check: ProjectCheck) -> None:
    """Nothing host-side in this key."""


def check_deny_set(value: object, where: str, why: str, check: ProjectCheck) -> None:
    if value not in (None, "", [], {}, False):
        refuse(where, value, why)


def check_deny_true(value: object, where: str, why: str, check: ProjectCheck) -> None:
    if value is True or value == "true":
        refuse(where, "true", why)


def check_not_negative(value: object, where: str, why: str, check: ProjectCheck) -> None:
    if value is None or (type(value) is int and value >= 0) or (isinstance(value, str) and value.isdigit()):
        return
    refuse(where, value, why)


def check_namespace(value: object, where: str, why: str, check: ProjectCheck) -> None:
    """pid/ipc/uts/userns_mode/cgroup: the run rules' modes; host, container: and service: are refused."""
    from gatekeeper.vetting.flag_checks import NAMESPACE_MODES, NAMESPACE_WHY

    flag = NAMESPACE_FLAGS[key_of(where)]
    text = str(value or "")
    if text in NAMESPACE_MODES[flag]:
        return
    if text.startswith(SHARED_NETWORK_PREFIXES):
        refuse(where, text, "joins another container's namespace")
    refuse(where, text, NAMESPACE_WHY[flag])


def check_network_mode(value: object, where: str, why: str, check: ProjectCheck) -> None:
    """As the run rules: bridge, none, default or a network name; not host, not another's stack."""
    from gatekeeper.vetting.flag_checks import network_name_ok

    text = str(value or "")
    if text.lower() == "host":
        refuse(where, text, "the host network namespace reaches every service on the host's loopback")
    if text.startswith(SHARED_NETWORK_PREFIXES):
        refuse(where, text, "joins another container's network namespace")
    if not (text in ("", "bridge", "none", "default") or network_name_ok(text)):
        refuse(where, text, "expected bridge, none, default or a network name")


def check_isolation(value: object, where: str, why: str, check: ProjectCheck) -> None:
    if value not in (None, "", "default"):
        refuse(where, value, why)


def check_security_opt(value: object, where: str, why: str, check: ProjectCheck) -> None:
    """The run rules: no-new-privileges, seccomp=builtin and apparmor=docker-default only."""
    from gatekeeper.grammar.pflag import GO_TRUE
    from gatekeeper.vetting.flag_checks import SECURITY_OPT_WHY, SECURITY_OPTS_ALLOWED, security_opt_pair

    for option in sequence(value, where):
        key, setting = security_opt_pair(str(option))
        if key == "no-new-privileges" and (setting is None or setting in GO_TRUE):
            continue
        if (key, setting) not in SECURITY_OPTS_ALLOWED:
            refuse(where, option, SECURITY_OPT_WHY.get(key, why))


def check_sysctls(value: object, where: str, why: str, check: ProjectCheck) -> None:
    """The run rules' safe list (gatekeeper.vetting.flag_checks.SAFE_SYSCTLS)."""
    from gatekeeper.vetting.flag_checks import SAFE_SYSCTLS

    names = (
        list(value) if isinstance(value, dict) else [str(s).split("=", 1)[0] for s in sequence(value, where)]
    )
    for name in names:
        if name not in SAFE_SYSCTLS:
            refuse(where, name, why)


def check_ulimits(value: object, where: str, why: str, check: ProjectCheck) -> None:
    """Each limit as compose hands it to the engine (N for both, or {soft, hard}; the engine
    reads the name in any case): the run rules' ulimit_refusal."""
    from gatekeeper.vetting.flag_checks import ulimit_refusal

    for name, limit in mapping(value, where).items():
        pair = limit if isinstance(limit, dict) else {"soft": limit, "hard": limit}
        soft, hard = pair.get("soft", 0), pair.get("hard", 0)
        if set(pair) - {"soft", "hard"} or type(soft) is not int or type(hard) is not int:
            refuse(f"{where}.{name}", limit, "a limit is a whole number or {soft, hard}")
        reason = ulimit_refusal(str(name), soft, hard)
        if reason:
            refuse(f"{where}.{name}", limit, reason)

def check_logging(value: object, where: str, why: str, check: ProjectCheck) -> None:
    from gatekeeper.vetting.run import LOG_OPTS

    driver = mapping(value, where).get("driver")
    if driver is not None and str(driver) not in LOCAL_LOG_DRIVERS:
        refuse(where + ".driver", driver, why)
    # Without a driver the daemon's default applies, which may be syslog or splunk:
    # their options (syslog-address, splunk-cacert) reach host sockets and files.
    for key in mapping(mapping(value, where).get("options") or {}, where + ".options"):
        if str(key) not in LOG_OPTS:
            refuse(f"{where}.options.{key}", "set", why)


def check_blkio(value: object, where: str, why: str, check: ProjectCheck) -> None:
    for key, setting in mapping(value, where).items():
        if key != "weight" and setting:
            refuse(f"{where}.{key}", setting, why)


def check_service_networks(value: object, where: str, why: str, check: ProjectCheck) -> None:
    for name, attachment in mapping(value, where).items():
        if mapping(attachment, where).get("driver_opts"):
            refuse(f"{where}.{name}.driver_opts", "set", why)


def check_deploy(value: object, where: str, why: str, check: ProjectCheck) -> None:
    """deploy.resources.reservations.devices is how compose asks for GPUs and other devices."""
    resources = mapping(mapping(value, where).get("resources"), where)
    reservations = mapping(resources.get("reservations"), where)
    if reservations.get("devices"):
        refuse(where + ".resources.reservations.devices", "set", _DEVICE_WHY)


def check_files(value: object, where: str, why: str, check: ProjectCheck) -> list[Any]:
    """env_file entries are {path, required} (or plain strings); label_file is a list of paths."""
    out: list[Any] = []
    for entry in sequence(value, where):
        if isinstance(entry, dict):
            out.append({**entry, "path": check.host_path(entry.get("path"), where)})
        else:
            out.append(check.host_path(entry, where))
    return out


def check_volumes(value: object, where: str, why: str, check: ProjectCheck) -> list[Any]:
    out = []
    for entry in sequence(value, where):
        volume = dict(mapping(entry, where))
        kind = VOLUME_TYPES.get(str(volume.get("type", "")), "an unknown volume type")
        if kind == "bind":
            volume["source"] = check.host_path(volume.get("source"), where + " (bind source)")
        elif kind != OK:
            refuse(where, volume.get("type") or "?", kind)
        check_volume_options(volume, where)
        out.append(volume)
    return out


def check_volume_options(volume: dict[str, Any], where: str) -> None:
    """The nested bind/volume/tmpfs/image options of one service volume."""
    for key, value in volume.items():
        if key not in VOLUME_ENTRY_KEYS:
            refuse(f"{where}.{key}", value, "an unknown volume option")
    for key, allowed in (("bind", BIND_OPTION_KEYS), ("volume", VOLUME_OPTION_KEYS),
                         ("tmpfs", TMPFS_OPTION_KEYS), ("image", IMAGE_OPTION_KEYS)):
        for option, value in mapping(volume.get(key), f"{where}.{key}").items():
            if option not in allowed:
                refuse(f"{where}.{key}.{option}", value,
                       "a subpath is walked by the daemon on the host" if option == "subpath"
                       else "an unknown volume option")
    propagation = mapping(volume.get("bind"), where).get("propagation", "rprivate")
    if propagation not in SAFE_BIND_PROPAGATIONS:
        refuse(f"{where}.bind.propagation", propagation,
               "shared propagation makes mounts made in the container appear on the host")


def check_build(value: object, where: str, why: str, check: ProjectCheck) -> dict[str, Any]:
    """Keys first (the context is resolved there), then the Dockerfile against the resolved context."""
    build = dict(mapping(value, where))
    check_keys(build, BUILD_KEYS, where.removeprefix("compose "), check)
    if "dockerfile" in build:
        build["dockerfile"] = dockerfile_path(build, where, check)
    return build


def dockerfile_path(build: dict[str, Any], where: str, check: ProjectCheck) -> str:
    """Relative Dockerfiles are inside the context; absolute ones are host files."""
    import posixpath

    dockerfile = build["dockerfile"]
    context = build.get("context")
    if not isinstance(dockerfile, str) or not isinstance(context, str):
        raise Denied(f"{where}.dockerfile: needs a local context", rule="compose-build")
    return check.host_path(posixpath.join(context, dockerfile), where + ".dockerfile")


def check_build_path(value: object, where: str, why: str, check: ProjectCheck) -> str:
    if isinstance(value, str) and ("://" in value or value.startswith("git@")):
        refuse(where, value, "remote build contexts are fetched outside the vetted project")
    return check.host_path(value, where)


def check_build_dockerfile(value: object, where: str, why: str, check: ProjectCheck) -> None:
    """Already resolved against the context by check_build."""


def check_build_contexts(value: object, where: str, why: str, check: ProjectCheck) -> dict[str, Any]:
    out = {}
    for name, source in mapping(value, where).items():
        if isinstance(source, str) and source.startswith(REMOTE_CONTEXT_PREFIXES):
            out[name] = source
        else:
            out[name] = check_build_path(source, f"{where}.{name}", why, check)
    return out


def check_build_cache_from(value: object, where: str, why: str, check: ProjectCheck) -> None:
    for entry in sequence(value, where):
        fields = {part.split("=", 1)[0].strip().lower(): part for part in str(entry).split(",")}
        if fields.get("type", "").lower().endswith("=local"):
            refuse(where, entry, why)


def check_build_network(value: object, where: str, why: str, check: ProjectCheck) -> None:
    if value == "host":
        refuse(where, value, why)


def check_volume_driver(value: object, where: str, why: str, check: ProjectCheck) -> None:
    if str(value) not in LOCAL_VOLUME_DRIVERS:
        refuse(where, value, why)


def check_network_driver(value: object, where: str, why: str, check: ProjectCheck) -> None:
    if str(value) not in LOCAL_NETWORK_DRIVERS:
        refuse(where, value, why)


def check_network_name(value: object, where: str, why: str, check: ProjectCheck) -> None:
    if str(value) in HOST_NETWORK_NAMES:
        refuse(where, value, why)


def check_file(value: object, where: str, why: str, check: ProjectCheck) -> str:
    return check.host_path(value, where)


VALUE_CHECKS: dict[str, Callable[[object, str, str, ProjectCheck], object]] = {
    OK: check_ok,
    DENY_SET: check_deny_set,
    DENY_TRUE: check_deny_true,
    NOT_NEGATIVE: check_not_negative,
    NAMESPACE: check_namespace,
    NETWORK_MODE: check_network_mode,
    ISOLATION: check_isolation,
    SECURITY_OPT: check_security_opt,
    SYSCTLS: check_sysctls,
    ULIMITS: check_ulimits,
    LOGGING: check_logging,
    BLKIO: check_blkio,
    DEPLOY: check_deploy,
    SERVICE_NETWORKS: check_service_networks,
    FILES: check_files,
    VOLUMES: check_volumes,
    BUILD: check_build,
    _BUILD_PATH: check_build_path,
    _BUILD_DOCKERFILE: check_build_dockerfile,
    _BUILD_CONTEXTS: check_build_contexts,
    _BUILD_CACHE_FROM: check_build_cache_from,
    _BUILD_NETWORK: check_build_network,
    _TOP_VOLUME_DRIVER: check_volume_driver,
    _TOP_NETWORK_DRIVER: check_network_driver,
    _TOP_NETWORK_NAME: check_network_name,
    _TOP_FILE: check_file,
}
