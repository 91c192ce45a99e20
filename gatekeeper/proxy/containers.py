"""Container create/update bodies and network connect/disconnect: vetted on what the
ENGINE will do, field by field, with the CLI layer's rules.

The body is parsed strictly (duplicate keys, also ones differing only in case, are
refused: Go's encoding/json matches field names case-insensitively and takes the
last copy) and forwarded as re-serialised here, so the engine reads what was checked:
* every object walked has a table of the fields it may carry (FIELDS below);
  a field not in its table is dropped if it holds the zero value and refused if not,
  so a spelling such as "privileged" or "Sy\u017fctls" never reaches Go's matcher;
* bind sources pass the path rule (gatekeeper.paths) and the disjoint-bind invariant
  (gatekeeper.proxy.binds) and are forwarded in their resolved form;
* named volumes, networks, links and `container:` modes must name the agent's own
  objects (or [shared] ones) and are resolved by the engine now;
* labels follow the label rules and get the owner label; [limits] caps hold, and
  absent limits get the policy's defaults (gatekeeper.vetting.limits, log_caps).
Rule ids follow the docker CLI flag of the same effect (flag-privileged, ...).
"""

from __future__ import annotations

import json

from gatekeeper.errors import Denied
from gatekeeper.grammar.docker_flags import OOM_WHY
from gatekeeper.proxy import objects

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from gatekeeper.policy import Policy
    from gatekeeper.proxy.contract import ApiVerdict
    from gatekeeper.proxy.vet import Call

    Check = Callable[["Body", str, object], object]


class Body:
    """One body being vetted: the call, and the bind sources it adds."""

    __slots__ = ("call", "binds", "new_volumes")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.binds: list[tuple[str, str]] = []
        self.new_volumes: dict[str, str] = {}  # name -> field: named volumes that do not exist yet


def refuse(field: str, value: object, why: str, flag: str) -> Denied:
    shown = json.dumps(value)[:120]
    return Denied(f"{field} {shown} is not allowed: {why}", rule=f"flag-{flag}")


def is_zero(value: object) -> bool:
    return value is None or value is False or value in ("", 0, [], {})


# ---------------------------------------------------------------- parsing


def parse_body(data: bytes) -> dict[str, Any]:
    def pairs(items: list[tuple[str, object]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key.casefold() in seen:
                # Stops: a second spelling of a field (Go matches names case-insensitively, last wins).
                raise Denied(f"body field {key!r} is given twice (names differing only in case count "
                             "as one)", rule="api-body")
            seen.add(key.casefold())
        return dict(items)

    try:
        body = json.loads(data or b"{}", object_pairs_hook=pairs)
    except (ValueError, UnicodeDecodeError):
        raise Denied("the request body is not JSON", rule="api-body") from None
    if not isinstance(body, dict):
        raise Denied("the request body is not a JSON object", rule="api-body")
    return body


def walk(body: Body, obj: object, fields: Mapping[str, Check], where: str) -> dict[str, Any]:
    """`obj` with each known field checked (a check may return a replacement value),
    unknown zero fields dropped and unknown non-zero fields refused."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise Denied(f"{where} must be an object", rule="api-body")
    out = {}
    for key, value in obj.items():
        check = fields.get(key)
        if check is None:
            if is_zero(value):
                continue
            # Stops: fields nobody vetted (a new engine feature, or Go's case-insensitive spelling).
            raise Denied(f"{where}.{key} is not a field the proxy vets; leave it out", rule="api-body-field")
        replaced = check(body, f"{where}.{key}", value)
        out[key] = value if replaced is None else replaced
    return out


# ---------------------------------------------------------------- simple checks


def allow(body: Body, field: str, value: object) -> None:
    return None


def zero(flag: str, why: str) -> Check:
    def check(body: Body, field: str, value: object) -> None:
        if not is_zero(value):
            raise refuse(field, value, why, flag)

    return check


def not_negative(flag: str, why: str) -> Check:
    """A whole number >= 0 (or absent); a float or a string is refused as the engine would not read it."""

    def check(body: Body, field: str, value: object) -> None:
        if value is not None and not (type(value) is int and value >= 0):
            raise refuse(field, value, why, flag)

    return check


def null_only(flag: str, why: str) -> Check:
    """Fields where even the empty list means something: MaskedPaths [] unmasks /proc."""

    def check(body: Body, field: str, value: object) -> None:
        if value is not None:
            raise refuse(field, value, why, flag)

    return check


def one_of(flag: str, allowed: frozenset[str], why: str) -> Check:
    def check(body: Body, field: str, value: object) -> None:
        if value is not None and not (isinstance(value, str) and value in allowed):
            raise refuse(field, value, why, flag)

    return check


def namespace(flag: str, allowed: frozenset[str], joins: bool) -> Check:
    """pid/ipc/uts/userns/cgroupns/network modes: the container's own namespace, or (pid,
    ipc, network) `container:<one of the agent's>`, forwarded by its full ID."""
    from gatekeeper.vetting.flag_checks import NAMESPACE_WHY

    def check(body: Body, field: str, value: object) -> object:
        mode = "" if value is None else value
        if not isinstance(mode, str):
            raise refuse(field, value, "expected a string", flag)
        if mode in allowed:
            return None
        if joins and mode.startswith("container:"):
            return "container:" + own_container(body, mode[len("container:"):], field)
        raise refuse(field, value, NAMESPACE_WHY.get(flag, "the host's namespace"), flag)

    return check


def own_container(body: Body, word: str, field: str) -> str:
    from gatekeeper.label_rules import check_owned

    if not word:
        raise Denied(f"{field}: name a container", rule="api-body")
    target = objects.resolve(body.call.engine, "container", word)
    # Stops: joining (or linking to) the namespaces of a container someone else runs.
    check_owned(body.call.ctx, target, "start", "container")
    return target.ident


# ---------------------------------------------------------------- host paths and volumes


def bind_source(body: Body, source: str, what: str) -> str:
    """The path rule, and the resolved form must re-split the same way."""
    from gatekeeper.paths import require_inert_mount, resolve_host_path
    from gatekeeper.vetting.binds import normal

    if not source.startswith("/"):
        raise Denied(f"{what} {source!r}: bind sources must be absolute host paths", rule="host-path")
    resolved = resolve_host_path(source, what, body.call.policy, body.call.ctx.world)
    if any(c in resolved for c in ':,"'):
        raise Denied(f"{what} {source!r} resolves to {resolved!r}, whose ':', ',' or '\"' the engine "
                     "would split", rule="host-path")
    require_inert_mount(resolved, what, body.call.ctx.world)
    body.binds.append((normal(resolved), what))
    return resolved


def named_volume(body: Body, name: str, what: str) -> None:
    """A volume mounted by name: it exists, is the agent's (or [shared]), and has no driver options;
    or it does not exist yet and is made the agent's before the create is forwarded."""
    from gatekeeper.vetting.flag_checks import is_volume_name

    if not is_volume_name(name):
        raise Denied(f"{what} {name!r} is neither an absolute host path nor a volume name",
                     rule="flag-volume")
    obj = objects.inspect(body.call.engine, "volume", name)
    if obj is None:
        # The agent's new volume: made by the proxy, labelled, once the create is allowed
        # (create_new_volumes), as the CLI layer's prepared step makes it.
        body.new_volumes.setdefault(name, what)
        return
    check_existing_volume(body, name, obj)


def check_existing_volume(body: Body, name: str, obj: dict[str, object]) -> None:
    from gatekeeper.vetting.volumes import check_volume

    options = json.dumps(obj.get("Options") or {})
    labels = json.dumps(obj.get("Labels") or {})
    check_volume(body.call.ctx, name, str(obj.get("Driver", "")), options, labels)


def check_binds(body: Body, field: str, value: object) -> object:
    from gatekeeper.vetting.flag_checks import VOLUME_MODES

    out = []
    for index, spec in enumerate(strings(field, value, "volume")):
        what = f"{field}[{index}]"
        parts = spec.split(":")
        if len(parts) > 3 or "" in parts:
            raise refuse(what, spec, "expected SOURCE:TARGET[:MODE] with no empty part", "volume")
        if len(parts) == 1:
            out.append(spec)  # an anonymous volume: a container path only
            continue
        for mode in parts[2].split(",") if len(parts) == 3 else []:
            if mode not in VOLUME_MODES:
                raise refuse(what, spec, f"volume option {mode!r} is not allowed (shared propagation "
                             "leaks mounts)", "volume")
        if parts[0].startswith("/"):
            parts[0] = bind_source(body, parts[0], f"{what} source")
        else:
            named_volume(body, parts[0], f"{what} source")
        out.append(":".join(parts))
    return out


def strings(field: str, value: object, flag: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise refuse(field, value, "expected a list of strings", flag)
    return value


MOUNT_TYPES = frozenset({"bind", "volume", "tmpfs", "image"})


def check_mounts(body: Body, field: str, value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, list):
        raise refuse(field, value, "expected a list", "mount")
    return [check_mount(body, f"{field}[{i}]", mount) for i, mount in enumerate(value)]


def check_mount(body: Body, field: str, mount: object) -> dict[str, Any]:
    if not isinstance(mount, dict):
        raise refuse(field, mount, "expected an object", "mount")
    kind = mount.get("Type")
    if not isinstance(kind, str) or kind not in MOUNT_TYPES:
        raise refuse(f"{field}.Type", kind, "mount types are bind, volume, tmpfs and image", "mount")
    out = walk(body, mount, MOUNT_FIELDS[kind], field)
    source = out.get("Source") or ""
    if not isinstance(source, str):
        raise refuse(f"{field}.Source", source, "expected a string", "mount")
    if kind == "bind":
        out["Source"] = bind_source(body, source, f"{field}.Source")
    elif kind == "volume" and source:
        named_volume(body, source, f"{field}.Source")
    elif kind == "tmpfs" and source:
        raise refuse(f"{field}.Source", source, "a tmpfs mount takes no source", "mount")
    elif kind == "image":
        from gatekeeper.proxy.images import check_image_source

        # Stops: the files of an image [images] allowed keeps the agent from running (the
        # operator's own build, say) read through a mount of it into an allowed image's container.
        check_image_source(body.call, source, f"{field}.Source (image mount)")
        if source:
            from gatekeeper.proxy.images import check_image_use

            # Stops: the operator's local image (not [images] shared) read through a mount.
            check_image_use(body.call, source, f"{field}.Source (image mount)")
    return out


def check_propagation(body: Body, field: str, value: object) -> None:
    from gatekeeper.vetting.flag_checks import BIND_PROPAGATIONS

    if value not in (None, "", *BIND_PROPAGATIONS):
        raise refuse(field, value, "shared propagation would carry container mounts to the host", "mount")


def check_volume_labels(body: Body, field: str, value: object) -> None:
    from gatekeeper.label_rules import check_label

    for key, label in (value or {}).items() if isinstance(value, dict) else [("?", value)]:
        check_label(body.call.ctx, f"{key}={label}", field)


TMPFS_OPTIONS = frozenset({
    "rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "diratime",
    "nodiratime", "relatime", "norelatime", "strictatime", "nostrictatime", "sync", "async", "dirsync",
    "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "huge", "tmpcopyup",
})  # fmt: skip


def tmpfs_option(field: str, option: str) -> None:
    if option.partition("=")[0] not in TMPFS_OPTIONS:
        raise refuse(field, option, f"tmpfs option {option.partition('=')[0]!r} is not one the proxy vets "
                     f"({', '.join(sorted(TMPFS_OPTIONS))})", "tmpfs")


def check_tmpfs(body: Body, field: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise refuse(field, value, "expected a map of paths to option strings", "tmpfs")
    for options in value.values():
        for option in filter(None, options.split(",")):
            tmpfs_option(field, option)


def check_tmpfs_options(body: Body, field: str, value: object) -> None:
    """Mounts[].TmpfsOptions.Options: [["size", "64m"], ["noexec"]]."""
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, list) or not item or not isinstance(item[0], str):
            raise refuse(field, value, "expected a list of [option, value] pairs", "tmpfs")
        tmpfs_option(field, item[0])


# ---------------------------------------------------------------- other HostConfig fields


def check_security_opts(body: Body, field: str, value: object) -> None:
    from gatekeeper.grammar.pflag import GO_TRUE
    from gatekeeper.vetting.flag_checks import SECURITY_OPT_WHY, SECURITY_OPTS_ALLOWED, security_opt_pair

    for option in strings(field, value, "security-opt"):
        key, setting = security_opt_pair(option)
        if key == "no-new-privileges" and (setting is None or setting in GO_TRUE):
            continue
        if (key, setting) in SECURITY_OPTS_ALLOWED:
            continue
        why = SECURITY_OPT_WHY.get(key, "unknown security option (only no-new-privileges, seccomp=builtin, "
                                        "apparmor=docker-default)")
        raise refuse(field, option, why, "security-opt")


def check_sysctls(body: Body, field: str, value: object) -> None:
    from gatekeeper.vetting.flag_checks import SAFE_SYSCTLS

    for key in value if isinstance(value, dict) else ([] if value is None else ["?"]):
        if key not in SAFE_SYSCTLS:
            raise refuse(field, key, f"sysctl {key!r} is not in the safe list "
                         f"({', '.join(sorted(SAFE_SYSCTLS))})", "sysctl")


def check_ulimits(body: Body, field: str, value: object) -> None:
    """[{Name, Soft, Hard}]; Go decodes the keys in any case and the engine the name too."""
    from gatekeeper.vetting.flag_checks import ulimit_refusal

    for item in value if isinstance(value, list) else ([] if value is None else ["?"]):
        limit = {str(key).lower(): got for key, got in item.items()} if isinstance(item, dict) else {}
        name, soft, hard = limit.get("name"), limit.get("soft", 0), limit.get("hard", 0)
        if (set(limit) - {"name", "soft", "hard"} or not isinstance(name, str)
                or type(soft) is not int or type(hard) is not int):
            raise refuse(field, item, "a ulimit is {Name, Soft, Hard} with whole numbers", "ulimit")
        reason = ulimit_refusal(name, soft, hard)
        if reason:
            raise refuse(field, item, reason, "ulimit")

def check_cap_drop(body: Body, field: str, value: object) -> object:
    """Docker's strslice: a string is one capability."""
    return strings(field, [value] if isinstance(value, str) else value, "cap-drop")


def drop_capabilities(host: dict[str, Any]) -> None:
    """The capabilities the agent's containers never hold (gatekeeper.vetting.run: NET_RAW sends
    any frame on the network, ARP replies claiming another container's address included)."""
    from gatekeeper.vetting.run import DROPPED_CAPABILITIES

    given = list(host.get("CapDrop") or [])
    dropped = {cap.upper().removeprefix("CAP_") for cap in given}
    if "ALL" not in dropped:
        host["CapDrop"] = given + [cap for cap in DROPPED_CAPABILITIES if cap not in dropped]


def check_storage_opt(body: Body, field: str, value: object) -> None:
    for key in value if isinstance(value, dict) else ([] if value is None else ["?"]):
        if key != "size":
            raise refuse(field, key, "only the size storage option is vetted", "storage-opt")


def check_links(body: Body, field: str, value: object) -> object:
    """Links "name[:alias]": the agent's own containers or [shared] ones, forwarded by ID."""
    from gatekeeper.label_rules import check_shared_or_owned

    out = []
    for link in strings(field, value, "link"):
        name, _, alias = link.partition(":")
        target = objects.resolve(body.call.engine, "container", name.lstrip("/"))
        shown = target.names[0] if target.names else name
        # Stops: docker copying the linked container's environment (its secrets) into ours.
        check_shared_or_owned(body.call.ctx, "container", shown, target.labels, "containers",
                              f"link ({field}) to", target.names)
        out.append(f"{target.ident}:{(alias or shown).rpartition('/')[2]}")
    return out


def check_network_mode(body: Body, field: str, value: object) -> object:
    """"host" is refused, `container:` must be the agent's own; a network by name is judged
    with the endpoint settings (NetworkingConfig), or here if it has none."""
    mode = value or ""
    if not isinstance(mode, str):
        raise refuse(field, value, "expected a string", "network")
    if mode.lower() == "host":
        raise refuse(field, value, "the host network namespace reaches every service on the host's "
                     "loopback", "network")
    if mode.startswith("container:"):
        return namespace("network", frozenset(), True)(body, field, value)
    if mode not in ("", "default", "bridge", "none"):
        join_network(body, mode, {}, field)
    return None


def join_network(body: Body, name: str, settings: dict[str, Any], field: str) -> None:
    from gatekeeper.vetting.namespaces import EVERYONES_NETWORKS, check_network

    if name in EVERYONES_NETWORKS:
        if settings.get("Aliases"):
            raise Denied(f"{field}: aliases on docker's {name!r} network are not allowed (everyone's)",
                         rule="foreign-network")
        return
    target = objects.resolve(body.call.engine, "network", name)
    if "host" in target.names:
        # Stops: the host network named by its ID or an ID prefix instead of "host".
        raise refuse(field, name, "names the host network: every service on the host's loopback", "network")
    check_network(body.call.ctx, name, target.names, target.labels, bool(settings.get("Aliases")),
                  field)
    if settings.get("NetworkID") not in (None, "", target.ident):
        raise Denied(f"{field}.NetworkID names another network than {name!r}", rule="foreign-network")


# ---------------------------------------------------------------- networks of the body


def check_endpoints(body: Body, field: str, value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise refuse(field, value, "expected a map of network names to settings", "network")
    out = {}
    for name, settings in value.items():
        where = f"{field}.{name}"
        checked = walk(body, settings, ENDPOINT_FIELDS, where)
        join_network(body, name, checked, where)
        out[name] = checked
    return out


def check_ipam_config(body: Body, field: str, value: object) -> object:
    from gatekeeper.vetting.addresses import check_address

    checked = walk(body, value, IPAM_FIELDS, field)
    for key in ("IPv4Address", "IPv6Address"):
        if checked.get(key):
            check_address(str(checked[key]), f"{field}.{key}", body.call.policy)
    return checked


# ---------------------------------------------------------------- labels, logs, health, caps


def check_labels(body: Body, field: str, value: object) -> object:
    from gatekeeper.proxy.labels import owner_labelled

    return owner_labelled(body.call, value, field, created=True)


def check_log_config(body: Body, field: str, value: object) -> object:
    from gatekeeper.vetting.run import LOG_OPTS, check_log_tag

    checked = walk(body, value, {"Type": allow, "Config": allow}, field)
    if checked.get("Type"):
        raise refuse(f"{field}.Type", checked["Type"], "other log drivers make the engine read host files "
                     "or dial host sockets; the engine's default driver only", "log-driver")
    options = checked.get("Config") or {}
    if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
        raise refuse(f"{field}.Config", options, "expected a map of strings", "log-opt")
    for key, option in options.items():
        if key not in LOG_OPTS:
            raise refuse(f"{field}.Config", key, f"log option {key!r} belongs to a driver that makes the "
                         "engine dial host sockets or read host files (allowed: "
                         f"{', '.join(sorted(LOG_OPTS))})",
                         "log-opt")
        if key == "tag":
            check_log_tag(option, f"{field}.Config.tag ", body.call.policy, "flag-log-opt")
    return {"Type": "", "Config": capped_log_options(options, field, body.call.policy)}


def capped_log_options(options: dict[str, str], field: str, policy: Policy) -> dict[str, str]:
    from gatekeeper.vetting.log_caps import log_caps, log_file_count, log_size, over_log_cap

    max_size, max_file = log_caps(policy)
    out = dict(options)
    if max_size:
        size = log_size(options["max-size"]) if "max-size" in options else None
        if "max-size" in options and (size is None or size > (log_size(max_size) or 0)):
            # Stops: a log that grows until the host's disk is full.
            raise over_log_cap(f"{field}.Config max-size", options["max-size"],
                               f"logs are capped at {max_size} per file")
        out.setdefault("max-size", max_size)
    if max_file:
        count = log_file_count(options["max-file"]) if "max-file" in options else None
        if "max-file" in options and (count is None or count > max_file):
            raise over_log_cap(f"{field}.Config max-file", options["max-file"],
                               f"container logs are capped at {max_file} files")
        out.setdefault("max-file", str(max_file))
    return out


def check_health(body: Body, field: str, value: object) -> object:
    from gatekeeper.vetting.limits import HEALTH_FIELDS, caps_of
    from gatekeeper.vetting.limits import check_health as floor

    checked = walk(body, value, {"Test": allow, **dict.fromkeys(HEALTH_FIELDS, allow)}, field)
    caps = caps_of(body.call.policy)
    for key, flag in HEALTH_FIELDS.items():
        amount = checked.get(key)
        if amount in (None, 0):
            continue
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise Denied(f"{field}.{key} must be an integer", rule="api-body")
        floor(flag, str(amount) if flag == "health-retries" else f"{amount}ns", caps, f"{field}.{key}")
    return checked if value is not None else None


RESTART_FIELDS: dict[str, Check] = {"Name": allow, "MaximumRetryCount": allow}


def restart_policy_name(body: Body, field: str, value: object) -> tuple[dict[str, Any], str]:
    """RestartPolicy with its fields spelt as the engine's: {"name": "always"} is Name to Go's JSON
    (names match case-insensitively) and would pass a check that reads "Name" only."""
    checked = walk(body, value, RESTART_FIELDS, field)
    name = checked.get("Name")
    if name is not None and not isinstance(name, str):
        raise Denied(f"{field}.Name must be a string", rule="api-body")
    return checked, name or ""


def check_restart_policy(body: Body, field: str, value: object) -> object:
    """create: with [limits] max_running, only policies a daemon restart keeps under the cap."""
    from gatekeeper.vetting.limits import caps_of, check_restart

    checked, name = restart_policy_name(body, field, value)
    check_restart(name, caps_of(body.call.policy), f"{field}.Name")
    return checked


def check_updated_restart_policy(body: Body, field: str, value: object) -> object:
    """update: with [limits] max_running, no restart policy at all. unless-stopped given to a
    container that exited by itself (not stopped by anyone) is started by the next daemon
    restart, though it was not running, so not counted, when the cap was checked."""
    from gatekeeper.vetting.limits import caps_of

    checked, name = restart_policy_name(body, field, value)
    if caps_of(body.call.policy).max_running and name not in NO_RESTART:
        raise Denied(f"{field}.Name {name!r} is not allowed while [limits] max_running is set: the next "
                     "daemon restart would start the container if it has exited by itself, past the "
                     "cap; give the restart policy at create (unless-stopped)", rule="limit-restart")
    return checked


def integer(field: str, value: object) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise Denied(f"{field} must be an integer", rule="api-body")
    return value


def apply_caps(call: Call, host: dict[str, Any], where: str, defaults: bool) -> None:
    """[limits] on HostConfig's resources; absent (zero) ones get the defaults on create."""
    from gatekeeper.vetting.limits import (
        NANO,
        caps_of,
        check_cpu_quota,
        check_memory,
        check_memory_swap,
        check_pids,
        checked_defaults,
        ram_in_bytes,
    )

    caps = caps_of(call.policy)
    given = set()
    for key, flag, check in (("Memory", "memory", check_memory),
                             ("MemorySwap", "memory-swap", check_memory_swap),
                             ("PidsLimit", "pids-limit", check_pids),
                             ("CpuQuota", "cpu-quota", check_cpu_quota),
                             ("CpuPeriod", "cpu-period", check_cpu_quota)):
        amount = integer(f"{where}.{key}", host.get(key))
        if amount:
            check(str(amount), caps, f"{where}.{key}")
            given.add(flag)
    cpus = integer(f"{where}.NanoCpus", host.get("NanoCpus"))
    if cpus and caps.cpus and (cpus < 0 or cpus > caps.cpus):
        from gatekeeper.vetting.limits import format_cpus, over_cap

        raise over_cap(f"{where}.NanoCpus", cpus, f"the CPU cap is {format_cpus(caps.cpus / NANO)}", "cpus")
    if cpus:
        given.add("cpus")
    if not defaults:
        return
    for flag, default in checked_defaults(caps, given):
        if flag == "memory":
            host["Memory"] = ram_in_bytes(default)
        elif flag == "cpus" and "cpu-quota" not in given:
            host["NanoCpus"] = round(float(default) * NANO)
        elif flag == "pids-limit":
            host["PidsLimit"] = int(default)


# ---------------------------------------------------------------- the tables

MAC_WHY = "a chosen MAC can clone a neighbour's and take its frames on the bridge"
DEVICE_WHY = "passes host devices into the container (raw disks, /dev/mem, ...)"
DEVICE_PATH_WHY = "names a host block device: the engine stats host /dev paths and throttles host disks"

RESOURCE_FIELDS: dict[str, Check] = {
    "CpuShares": allow, "Memory": allow, "NanoCpus": allow, "CpuPeriod": allow, "CpuQuota": allow,
    "CpuRealtimePeriod": allow, "CpuRealtimeRuntime": allow, "CpusetCpus": allow, "CpusetMems": allow,
    "MemoryReservation": allow, "MemorySwap": allow, "MemorySwappiness": allow,
    "OomKillDisable": zero("oom-kill-disable", OOM_WHY),
    "PidsLimit": allow, "Ulimits": check_ulimits, "KernelMemory": allow, "KernelMemoryTCP": allow,
    "BlkioWeight": allow,
    "CpuCount": allow, "CpuPercent": allow, "IOMaximumIOps": allow, "IOMaximumBandwidth": allow,
    "CgroupParent": zero("cgroup-parent", "places the container in a host cgroup of the agent's choosing, "
                         "escaping the limits the engine sets"),
    "BlkioWeightDevice": zero("blkio-weight-device", DEVICE_PATH_WHY),
    "BlkioDeviceReadBps": zero("device-read-bps", DEVICE_PATH_WHY),
    "BlkioDeviceWriteBps": zero("device-write-bps", DEVICE_PATH_WHY),
    "BlkioDeviceReadIOps": zero("device-read-iops", DEVICE_PATH_WHY),
    "BlkioDeviceWriteIOps": zero("device-write-iops", DEVICE_PATH_WHY),
    "Devices": zero("device", DEVICE_WHY),
    "DeviceCgroupRules": zero("device-cgroup-rule", "lets the container open host devices ('b *:* rwm' with "
                              "mknod reaches host disks)"),
    "DeviceRequests": zero("gpus", "passes host GPU device nodes and driver libraries into the container"),
}  # fmt: skip

HOST_FIELDS: dict[str, Check] = {
    **RESOURCE_FIELDS,
    "Binds": check_binds, "Mounts": check_mounts, "Tmpfs": check_tmpfs, "LogConfig": check_log_config,
    "NetworkMode": check_network_mode, "Links": check_links, "SecurityOpt": check_security_opts,
    "Sysctls": check_sysctls, "StorageOpt": check_storage_opt,
    "ContainerIDFile": allow, "PortBindings": allow, "RestartPolicy": check_restart_policy,
    "AutoRemove": allow, "ConsoleSize": allow, "CapDrop": check_cap_drop, "Dns": allow, "DnsOptions": allow,
    "DnsSearch": allow,
    "ExtraHosts": allow, "GroupAdd": allow, "PublishAllPorts": allow,
    "OomScoreAdj": not_negative("oom-score-adj", OOM_WHY),
    "ReadonlyRootfs": allow, "ShmSize": allow, "Init": allow,
    "Privileged": zero("privileged", "a privileged container has every capability and all host devices: "
                       "host root"),
    "CapAdd": zero("cap-add", "adds kernel capabilities (SYS_ADMIN, SYS_MODULE, ...) that break out of "
                   "the container"),
    "VolumeDriver": zero("volume-driver", "a volume plugin can map any host path: a bind mount in disguise"),
    "VolumesFrom": zero("volumes-from", "inherits another container's mounts, including its host binds"),
    "Annotations": zero("annotation", "OCI annotations reach the runtime; some turn into host devices"),
    "Cgroup": zero("cgroup", "joins another container's cgroup"),
    "Runtime": zero("runtime", "selects another OCI runtime the engine knows, possibly one without "
                    "confinement"),
    "Isolation": one_of("isolation", frozenset({"", "default"}), "the engine's default isolation only"),
    "MaskedPaths": null_only("security-opt", "replaces the masked /proc and /sys paths "
                             "(systempaths=unconfined)"),
    "ReadonlyPaths": null_only("security-opt", "replaces the read-only /proc paths (systempaths=unconfined)"),
    "PidMode": namespace("pid", frozenset({""}), True),
    "IpcMode": namespace("ipc", frozenset({"", "none", "private", "shareable"}), True),
    "UTSMode": namespace("uts", frozenset({""}), False),
    "UsernsMode": namespace("userns", frozenset({""}), False),
    "CgroupnsMode": namespace("cgroupns", frozenset({"", "private"}), False),
}  # fmt: skip

IPAM_FIELDS: dict[str, Check] = {
    "IPv4Address": allow, "IPv6Address": allow,
    "LinkLocalIPs": zero("link-local-ip", "link-local addresses are the engine's to assign (169.254/16 "
                         "holds the metadata address)"),
}  # fmt: skip

ENDPOINT_FIELDS: dict[str, Check] = {
    "IPAMConfig": check_ipam_config, "Links": check_links, "Aliases": allow, "NetworkID": allow,
    "GwPriority": allow, "DNSNames": allow,
    "MacAddress": zero("mac-address", MAC_WHY),
    "DriverOpts": zero("network", "endpoint driver options reach the network driver (sysctls, ifname)"),
}  # fmt: skip

MOUNT_COMMON: dict[str, Check] = {"Type": allow, "Source": allow, "Target": allow, "ReadOnly": allow,
                                  "Consistency": allow}
MOUNT_FIELDS: dict[str, dict[str, Check]] = {
    "bind": {**MOUNT_COMMON, "BindOptions": lambda b, f, v: walk(b, v, {
        "Propagation": check_propagation, "NonRecursive": allow, "ReadOnlyNonRecursive": allow,
        "ReadOnlyForceRecursive": allow,
        "CreateMountpoint": zero("mount", "the engine would create the host directory as root")}, f)},
    "volume": {**MOUNT_COMMON, "VolumeOptions": lambda b, f, v: walk(b, v, {
        "NoCopy": allow, "Labels": check_volume_labels,
        "DriverConfig": zero("mount", "a volume driver or its options bind-mount any host path"),
        "Subpath": zero("mount", "the engine walks it on the host inside the volume, where containers "
                        "plant symlinks")}, f)},
    "tmpfs": {**MOUNT_COMMON, "TmpfsOptions": lambda b, f, v: walk(b, v, {
        "SizeBytes": allow, "Mode": allow, "Options": check_tmpfs_options}, f)},
    "image": {**MOUNT_COMMON, "ImageOptions": lambda b, f, v: walk(b, v, {
        "Subpath": zero("mount", "the engine walks it on the host inside the image, which the agent "
                        "builds (symlinks)")}, f)},
}

CONFIG_FIELDS: dict[str, Check] = {
    "Hostname": allow, "Domainname": allow, "User": allow, "AttachStdin": allow, "AttachStdout": allow,
    "AttachStderr": allow, "ExposedPorts": allow, "Tty": allow, "OpenStdin": allow, "StdinOnce": allow,
    "Env": allow, "Cmd": allow, "ArgsEscaped": allow, "Image": allow, "Volumes": allow, "WorkingDir": allow,
    "Entrypoint": allow, "NetworkDisabled": allow, "OnBuild": allow, "StopSignal": allow,
    "StopTimeout": allow, "Shell": allow,
    "MacAddress": zero("mac-address", MAC_WHY),
    "Labels": check_labels, "Healthcheck": check_health,
    "HostConfig": lambda b, f, v: walk(b, v, HOST_FIELDS, f),
    "NetworkingConfig": lambda b, f, v: walk(b, v, {"EndpointsConfig": check_endpoints}, f),
}  # fmt: skip

UPDATE_FIELDS: dict[str, Check] = {**RESOURCE_FIELDS, "RestartPolicy": check_updated_restart_policy}


# ---------------------------------------------------------------- the vetters


def vet_container_create(call: Call) -> ApiVerdict:
    from gatekeeper.proxy.binds import check_new_binds

    body = Body(call)
    raw = parse_body(call.request.body)
    raw.setdefault("Labels", None)  # the owner label goes in even when the client sent none
    raw.setdefault("HostConfig", None)
    checked = walk(body, raw, CONFIG_FIELDS, "body")
    host = checked["HostConfig"]
    host["LogConfig"] = host.get("LogConfig") or check_log_config(body, "HostConfig.LogConfig", None)
    apply_caps(call, host, "HostConfig", defaults=True)
    drop_capabilities(host)
    check_published_ports(call, host)
    image: dict[str, Any] | None = None
    if isinstance(checked.get("Image"), str) and checked["Image"]:
        from gatekeeper.proxy.images import check_image_source

        check_image_source(call, checked["Image"], "image")
        image = objects.inspect(call.engine, "image", checked["Image"])  # None: the engine has none
    check_new_binds(call, body.binds)
    if body.binds:
        check_no_restart_policy(host.get("RestartPolicy"), "HostConfig.RestartPolicy")
    check_inherited_labels(call, image, checked["Labels"])
    if image is not None:
        from gatekeeper.proxy.images import check_found_use

        # Stops: `docker run <the operator's image> env` printing what `image inspect` redacts.
        check_found_use(call, checked["Image"], image, "image")
    check_inherited_health(call, checked.get("Image"), checked.get("Healthcheck"))
    create_new_volumes(body)
    call.body = json.dumps(checked, ensure_ascii=False, separators=(",", ":")).encode()
    return call.allow()


def create_new_volumes(body: Body) -> None:
    """Named volumes the create mounts that did not exist: the proxy makes each (local driver, no
    options, the owner label) once every other check passed, then checks what the engine
    answers, so one made meanwhile by someone else is refused, never mounted."""
    from gatekeeper.owner import OWNER_LABEL
    from gatekeeper.vetting.volumes import RESERVED_VOLUME_PREFIX

    call = body.call
    make = getattr(call.engine, "create_volume", None)
    for name, what in body.new_volumes.items():
        if name.lower().startswith(RESERVED_VOLUME_PREFIX) or make is None:
            # Stops: the engine making an unlabelled volume the agent could not use again, and
            # gatekeeper's own gatekeeper- record names squatted.
            raise Denied(f"{what}: volume {name!r} does not exist; create it first (docker volume create "
                         f"{name})", rule="foreign-volume")
        from gatekeeper.proxy.disk import check_disk_budget
        from gatekeeper.proxy.names import check_given

        check_given(call, "volume", name, what)
        check_disk_budget(call, f"volume {name!r}")
        status, obj = make(name, {OWNER_LABEL: call.profile})
        if status != 201 or not isinstance(obj, dict):
            raise Denied(f"{what}: the engine did not create volume {name!r} (status {status})",
                         rule="foreign-volume")
        check_existing_volume(body, name, obj)
        call.made_volumes.append(name)


def check_published_ports(call: Call, host: dict[str, object]) -> None:
    """PortBindings / PublishAllPorts under the policy's [ports] (gatekeeper.vetting.ports)."""
    from gatekeeper.vetting.ports import api_port_refusal

    why = api_port_refusal(call.policy, host.get("PortBindings"), host.get("PublishAllPorts"))
    if why is not None:
        flag = "publish-all" if why.startswith("PublishAllPorts") else "publish"
        # Stops: the agent's services listening on the host's public interfaces or its privileged ports.
        raise Denied(f"HostConfig.{why} (policy [ports]); publish on an address and port the policy "
                     "lists, e.g. 127.0.0.1:8080", rule=f"flag-{flag}")


def check_inherited_labels(call: Call, found: dict[str, Any] | None, labels: dict[str, str]) -> None:
    """The labels the container inherits from its image (`found`, its inspect object, None
    when the engine has none) follow the rules of the body's own; the owner label is the
    body's, always."""
    from gatekeeper.owner import OWNER_LABEL
    from gatekeeper.proxy.labels import owner_labelled

    image_labels = objects.config_labels(found) if found is not None else None
    if not isinstance(image_labels, dict):
        return  # no such image: the engine refuses the create (or pulls nothing: the CLI pulls first)
    inherited = {str(k): str(v) for k, v in image_labels.items() if k not in labels and k != OWNER_LABEL}
    if inherited:
        # Stops: a Dockerfile LABEL com.docker.compose.project=<the operator's>, traefik.*,
        # gatekeeper.*: what a create body may not say, said by the image.
        own = {k: v for k, v in labels.items() if k != OWNER_LABEL}
        owner_labelled(call, {**inherited, **own}, "image label")


def check_inherited_health(call: Call, image: object, own: object) -> None:
    """The image's HEALTHCHECK fields the body leaves at 0 follow the floors too (the engine
    takes them from the image)."""
    from gatekeeper.vetting.limits import HEALTH_FIELDS, caps_of, check_image_health

    caps = caps_of(call.policy)
    if not caps.health or not isinstance(image, str) or not image:
        return
    own = own if isinstance(own, dict) else {}
    test = own.get("Test")
    if isinstance(test, list) and test[:1] == ["NONE"]:
        return  # the body turns the checks off (--no-healthcheck)
    found = objects.inspect(call.engine, "image", image)
    config = found.get("Config") if found is not None else None
    health = config.get("Healthcheck") if isinstance(config, dict) else None
    given = {flag for key, flag in HEALTH_FIELDS.items() if own.get(key) not in (None, 0)}
    check_image_health(health, given, caps, f"image {image[:80]!r}")


NO_RESTART = ("", "no")


def check_no_restart_policy(policy: object, field: str) -> None:
    """A container with host binds starts only through the proxy, where its sources are judged again."""
    name = policy.get("Name") if isinstance(policy, dict) else policy
    if name in (None, *NO_RESTART):
        return
    # Stops: mv src src.old; ln -s /etc src; the engine restarts the container on exit or at a
    # daemon restart, without asking the proxy, and mounts what the symlink names.
    raise Denied(f"{field} {json.dumps(policy)[:80]} is not allowed on a container with host bind mounts: "
                 "the engine would restart it without asking the proxy and mount whatever the source "
                 "names by then; leave the restart policy out (start it again yourself) or use a named "
                 "volume", rule="flag-restart")


def host_binds(obj: dict[str, Any]) -> list[str]:
    """The host bind sources an inspected container holds."""
    host = obj.get("HostConfig") or {}
    sources = [str(spec).split(":", 1)[0] for spec in host.get("Binds") or []]
    sources += [str(m.get("Source")) for m in [*(host.get("Mounts") or []), *(obj.get("Mounts") or [])]
                if isinstance(m, dict) and m.get("Type") == "bind"]
    return [source for source in sources if source.startswith("/")]


def vet_container_update(call: Call) -> ApiVerdict:
    from gatekeeper.proxy.vet import judge_path_object

    target = judge_path_object(call)
    checked = walk(Body(call), parse_body(call.request.body), UPDATE_FIELDS, "body")
    apply_caps(call, checked, "body", defaults=False)
    if checked.get("RestartPolicy") is not None:
        obj = objects.inspect(call.engine, "container", target.ident) or {}
        if host_binds(obj):
            check_no_restart_policy(checked["RestartPolicy"], "body.RestartPolicy")
    call.body = json.dumps(checked, separators=(",", ":")).encode()
    return call.allow()


def vet_network_connect(call: Call) -> ApiVerdict:
    """The agent's container onto a network it may join (aliases only on its own)."""
    body = Body(call)
    raw = parse_body(call.request.body)
    fields = {"Container": allow, "EndpointConfig": lambda b, f, v: walk(b, v, ENDPOINT_FIELDS, f)}
    checked = walk(body, raw, fields, "body")
    network = objects.resolve(call.engine, "network", call.params["id"])
    name = network.names[0] if network.names else network.ident
    join_network(body, name, checked.get("EndpointConfig") or {}, f"network {call.params['id']!r}")
    checked["Container"] = own_container(body, str(checked.get("Container") or ""), "body.Container")
    call.params["id"] = network.ident
    call.body = json.dumps(checked, separators=(",", ":")).encode()
    return call.allow()


def vet_network_disconnect(call: Call) -> ApiVerdict:
    body = Body(call)
    checked = walk(body, parse_body(call.request.body), {"Container": allow, "Force": allow}, "body")
    network = objects.resolve(call.engine, "network", call.params["id"])
    checked["Container"] = own_container(body, str(checked.get("Container") or ""), "body.Container")
    call.params["id"] = network.ident
    call.body = json.dumps(checked, separators=(",", ":")).encode()
    return call.allow()
