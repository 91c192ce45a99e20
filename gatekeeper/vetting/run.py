"""Family rules for `docker run`/`create` and `docker start`, beyond single flags.

Every flag of run/create is vetted on its own (gatekeeper.vetting.flag_checks
and the grammar tables). What remains here: positionals, and option families
whose meaning depends on the daemon's configuration rather than on the flag.
For run/create the first positional is the image and the rest is the
container's own command line: not ours to vet, whatever it looks like.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.policy import Policy
    from gatekeeper.vetting.context import Context

# --log-opt keys of the json-file and local drivers (and the generic ones).
# The driver is the daemon's default, which an operator may have set to
# syslog, gelf, fluentd or splunk: their options (syslog-address,
# syslog-tls-ca-cert, splunk-cacert, ...) make dockerd, as root, dial host
# sockets or read host files.
LOG_OPTS = frozenset({
    "max-size", "max-file", "compress", "labels", "labels-regex", "env",
    "env-regex", "tag", "mode", "max-buffer-size",
})  # fmt: skip

# Refused by the grammar table already; checked again here because each one
# turns `start` into an attach (an exec into a running shell by another name)
# or a restore of unvetted process state, and a table edit must not undo that.
START_REFUSED = frozenset({"attach", "interactive", "checkpoint", "checkpoint-dir"})


# Capabilities every container of the agent's runs without, whatever it asks: CAP_NET_RAW (in
# docker's default set) sends any frame on the container's network: a gratuitous ARP that claims
# another container's address takes its traffic (the MAC clone `--mac-address` is refused for),
# on docker's default bridge and on [shared] networks alike. iputils ping needs none (docker lets
# containers open ICMP datagram sockets: net.ipv4.ping_group_range).
DROPPED_CAPABILITIES = ("NET_RAW",)


def vet_run(ctx: Context) -> None:
    """docker run/create: log options stay with harmless drivers, NET_RAW dropped. The image and
    the container's command need nothing more (docker refuses a missing image)."""
    vet_log_options(ctx)
    dropped = {(use.value or "").upper().removeprefix("CAP_") for use in ctx.parsed.uses
               if use.flag.long == "cap-drop"}
    if "ALL" not in dropped:
        ctx.insert_after_command([f"--cap-drop={cap}" for cap in DROPPED_CAPABILITIES if cap not in dropped])


def vet_log_options(ctx: Context) -> None:
    for use in ctx.parsed.uses:
        if use.flag.long != "log-opt":
            continue
        key, _, value = (use.value or "").partition("=")
        if key not in LOG_OPTS:
            raise Denied(
                f"{use.spelled} {use.value!r} is not allowed: log option {key!r} belongs to a driver "
                f"that makes the daemon dial host sockets or read host files "
                f"(allowed: {', '.join(sorted(LOG_OPTS))})",
                rule=f"flag-{use.name}",
            )
        if key == "tag":
            check_log_tag(value, f"{use.spelled} tag=", ctx.policy, f"flag-{use.name}")


def check_log_tag(tag: str, what: str, policy: Policy, rule: str) -> None:
    """Where the engine logs to journald or syslog, the tag is the record's identifier:
    `tag=gatekeeper` makes a container's output read as gatekeeper's own audit records.
    A template ({{.Name}}) could spell a reserved tag from a name, so none is taken."""
    reserved = reserved_tags(policy)
    lowered = tag.lower()
    if "{{" in tag or any(word in lowered for word in reserved):
        raise Denied(f"{what}{tag!r} is not allowed: log tags may not contain "
                     f"{', '.join(sorted(reserved))} (reserved by policy [audit] reserved_tags) "
                     "or a template", rule=rule)


def reserved_tags(policy: Policy) -> tuple[str, ...]:
    return policy.reserved_tags


def drop_model_capabilities(model: dict[str, Any]) -> None:
    """compose: every service of the model compose is fed drops DROPPED_CAPABILITIES too."""
    services = model.get("services")
    for name, service in (services if isinstance(services, dict) else {}).items():
        if not isinstance(service, dict):
            continue
        given = service.get("cap_drop") or []
        if not isinstance(given, list) or not all(isinstance(cap, str) for cap in given):
            raise Denied(f"compose service {name!r}: cap_drop {given!r} is not a list of capability names",
                         rule="compose-cap_drop")
        dropped = {cap.upper().removeprefix("CAP_") for cap in given}
        if "ALL" not in dropped:
            service["cap_drop"] = given + [cap for cap in DROPPED_CAPABILITIES if cap not in dropped]


def vet_model_log_options(ctx: Context, model: dict[str, Any]) -> None:
    """compose `logging.options`: the run rules (keys of harmless drivers, no reserved tag).
    With no driver named, the daemon's default driver (syslog, journald, ...) reads them."""
    services = model.get("services")
    for name, service in (services if isinstance(services, dict) else {}).items():
        logging = service.get("logging") if isinstance(service, dict) else None
        options = logging.get("options") if isinstance(logging, dict) else None
        for key, value in (options if isinstance(options, dict) else {}).items():
            what = f"compose service {name!r}: logging.options.{key}"
            if key not in LOG_OPTS:
                raise Denied(f"{what} is not allowed: it belongs to a driver that makes the daemon dial "
                             f"host sockets or read host files (allowed: {', '.join(sorted(LOG_OPTS))})",
                             rule="compose-logging")
            if key == "tag":
                check_log_tag(str(value), f"{what} ", ctx.policy, "compose-logging")


def vet_start(ctx: Context) -> None:
    """docker start: no attach in any spelling or position (flags may follow the names)."""
    for use in ctx.parsed.uses:
        if use.flag.long in START_REFUSED:
            raise Denied(
                f"{use.spelled} is not allowed for 'docker {ctx.located.spelled}': "
                f"{use.flag.why or 'attaches to or restores the container'}",
                rule=f"flag-{use.name}",
            )
