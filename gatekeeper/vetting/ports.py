"""Published ports: -p/--publish, -P/--publish-all, compose `ports` (policy [ports]).

A published port is a listening socket on the host, set up by the engine (as root,
with NAT rules that bypass the host firewall). Left to docker's default, `-p 8080:80`
listens on every interface (0.0.0.0 and ::): whatever the agent runs is then served
to the network. So a published port must name a host address on the policy's list
(default: loopback only) and a host port inside its ranges (default: 1024-65535,
unprivileged ports, so the agent cannot stand in for the host's own services).

The spec is parsed as docker's CLI parses it (go-connections nat.ParsePortSpec and
cli/command/container/opts.go convertToStandardNotation): `[IP:][HOSTPORT:]CPORT[/PROTO]`,
an IPv6 address with or without brackets, port ranges `A-B`; the long form
`published=8080,target=80` drops any address, so it always means every interface.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.grammar.pflag import FlagUse, Parsed
    from gatekeeper.policy import Policy
    from gatekeeper.vetting.context import Context

DECIMAL_DIGITS = frozenset("0123456789")
ALL_INTERFACES = ("0.0.0.0", "::")  # what an empty host address binds  # noqa: S104
# The kernel's default ip_local_port_range: where the engine picks a host port left empty.
EPHEMERAL = (32768, 60999)
MAX_PORT = 65535


class PortRules:
    """The policy's [ports], parsed once per decision."""

    __slots__ = ("addresses", "ranges", "publish_all")

    def __init__(self, settings: dict[str, object]) -> None:
        self.addresses = frozenset(normal_address(str(a)) for a in settings["host_addresses"])  # type: ignore[attr-defined]  # a list: the schema checked it
        self.ranges = sorted(port_range(str(r)) for r in settings["host_ports"])  # type: ignore[attr-defined]  # a list, as above
        self.publish_all = bool(settings["publish_all"])

    def refusal(self, address: str, host_ports: str) -> str | None:
        """Why publishing on `address` ("" = every interface) and `host_ports` is refused, or None."""
        wanted = ALL_INTERFACES if address == "" else (normal_address(address),)
        missing = [a for a in wanted if a not in self.addresses]
        if missing:
            where = "every interface (0.0.0.0 and ::)" if address == "" else address
            return (f"it would listen on {where}; allowed host addresses: {self.shown_addresses()} "
                    f"(publish as {self.example()})")
        low, high = EPHEMERAL if host_ports == "" else port_range(host_ports)
        if not covered(low, high, self.ranges):
            what = "a host port the engine picks" if host_ports == "" else f"host port {host_ports}"
            return f"{what} is outside the allowed ranges {self.shown_ranges()}"
        return None

    def example(self) -> str:
        first = min(self.addresses, default="127.0.0.1")
        return f"[{first}]:8080:80" if ":" in first else f"{first}:8080:80"

    def shown_addresses(self) -> str:
        return ", ".join(sorted(self.addresses)) or "none"

    def shown_ranges(self) -> str:
        return ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in self.ranges) or "none"


def port_rules(policy: Policy) -> PortRules:
    return PortRules(policy.settings["ports"])


# Addresses already in ipaddress's canonical spelling, read without importing it (~2-3 ms
# with functools and collections on every `-p`): the default list's IPv6 loopback and any.
CANONICAL_IPV6 = frozenset(("::1", "::"))


def normal_address(text: str) -> str:
    """An IP address in its canonical spelling; ValueError for anything else (zones too)."""
    if text in CANONICAL_IPV6 or canonical_ipv4(text):
        return text
    from ipaddress import ip_address

    if "%" in text:
        raise ValueError(f"{text!r}: a scoped address")
    address = ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:0.0.0.0 is 0.0.0.0 to the kernel
    return str(mapped or address)


def canonical_ipv4(text: str) -> bool:
    """Four ASCII decimals 0-255 without leading zeros, dot-separated: what
    str(ip_address(text)) gives back unchanged (anything else asks ipaddress)."""
    parts = text.split(".")
    return len(parts) == 4 and all(
        0 < len(part) <= 3 and set(part) <= DECIMAL_DIGITS and (part == "0" or part[0] != "0")
        and int(part) <= 255 for part in parts)


def port_range(text: str) -> tuple[int, int]:
    """'8080' or '8000-8010' (docker's ParsePortRange); ValueError otherwise."""
    low, dash, high = text.partition("-")
    if not (low.isdigit() and (high.isdigit() if dash else True)) or not low.isascii() or not high.isascii():
        raise ValueError(f"{text!r}: expected PORT or LOW-HIGH")
    first, last = int(low), int(high) if dash else int(low)
    if not 0 < first <= last <= MAX_PORT:
        raise ValueError(f"{text!r}: ports are 1-65535, low before high")
    return first, last


def is_port_range(text: object) -> bool:
    try:
        port_range(str(text))
    except ValueError:
        return False
    return isinstance(text, str)


def is_address(text: object) -> bool:
    try:
        normal_address(str(text))
    except ValueError:
        return False
    return isinstance(text, str)


def covered(low: int, high: int, ranges: list[tuple[int, int]]) -> bool:
    """Every port of low..high lies in some allowed range (ranges sorted)."""
    for first, last in ranges:
        if first <= low <= last:
            if high <= last:
                return True
            low = last + 1
    return False


def split_spec(spec: str) -> tuple[str, str]:
    """(host address, host ports) of a -p value, as nat.ParsePortSpec splits it."""
    if "=" in spec:
        return "", long_form_published(spec)  # convertToStandardNotation drops the address
    parts = spec.split(":")
    if len(parts) == 1:
        return "", ""
    if len(parts) == 2:
        return "", parts[0]
    address = ":".join(parts[:-2])
    if address.startswith("["):
        if not address.endswith("]"):
            raise ValueError(f"invalid IP address {address!r}")
        address = address[1:-1]
    if address:
        normal_address(address)
    return address, parts[-2]


def long_form_published(spec: str) -> str:
    """`published=8080,target=80[,protocol=tcp]`: the published port (the last one given)."""
    published = ""
    for field in spec.split(","):
        key, eq, value = field.partition("=")
        if not eq or not key:
            raise ValueError(f"invalid publish option {field!r}")
        if key == "published":
            published = value
    return published


# --- flags ---------------------------------------------------------------------


def check_publish(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """-p/--publish (run, create, compose run)."""
    try:
        address, host_ports = split_spec(use.value or "")
        why = port_rules(ctx.policy).refusal(address, host_ports)
    except ValueError as error:
        why = f"not a port spec docker reads the same way ({error})"
    if why is not None:
        raise Denied(f"{use.spelled} {use.value!r} is not allowed: {why}", rule=f"flag-{use.name}")


def check_publish_all(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """-P publishes every exposed port (the image's EXPOSE too) on every interface."""
    from gatekeeper.grammar.pflag import bool_value

    last = [u for u in parsed.uses if u.flag is use.flag][-1]
    if last is use and bool_value(use) and not port_rules(ctx.policy).publish_all:
        raise Denied(f"{use.spelled} is not allowed: it publishes every exposed port on every interface; "
                     "publish each port with -p ADDRESS:HOSTPORT:PORT on an allowed address",
                     rule=f"flag-{use.name}")


# --- compose -------------------------------------------------------------------


def vet_model_ports(ctx: Context, model: dict[str, Any]) -> None:
    """Every service's rendered `ports` (compose normalises them to the long form)."""
    rules = None
    for name, service in (model.get("services") or {}).items():
        for index, port in enumerate((service or {}).get("ports") or []):
            rules = rules or port_rules(ctx.policy)
            check_model_port(rules, port, f"service {name!r}: ports[{index}]")


def check_model_port(rules: PortRules, port: object, where: str) -> None:
    if not isinstance(port, dict):
        raise Denied(f"{where}: expected the rendered long form, got {port!r}", rule="compose-model")
    address, published = str(port.get("host_ip") or ""), str(port.get("published") or "")
    try:
        why = rules.refusal(address, published)
    except ValueError as error:
        why = f"not an address or port compose reads the same way ({error})"
    if why is not None:
        raise Denied(f"{where}: {address or '*'}:{published or '*'} is not allowed: {why}",
                     rule="compose-ports")


# --- the engine API (for the proxy's container-create vetting) -------------------


def api_port_refusal(policy: Policy, port_bindings: object, publish_all: object) -> str | None:
    """Why a create body's HostConfig.PortBindings / PublishAllPorts is refused, or None.
    PortBindings is {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}; "" = every interface
    (HostIp) or a port the engine picks (HostPort)."""
    rules = port_rules(policy)
    if publish_all and not rules.publish_all:
        return "PublishAllPorts publishes every exposed port on every interface"
    if port_bindings is None:
        return None
    if not isinstance(port_bindings, dict):
        return "PortBindings must be an object"
    for port, bindings in port_bindings.items():
        why = bindings_refusal(rules, port, bindings)
        if why is not None:
            return why
    return None


def bindings_refusal(rules: PortRules, port: object, bindings: object) -> str | None:
    """Why PortBindings[port], one port's list of bindings, is refused, or None."""
    if bindings is not None and not isinstance(bindings, list):
        return f"PortBindings[{port!r}] must be a list of objects"
    for binding in bindings or []:
        if not isinstance(binding, dict):
            return f"PortBindings[{port!r}] must be a list of objects"
        try:
            why = rules.refusal(str(binding.get("HostIp") or ""), str(binding.get("HostPort") or ""))
        except ValueError as error:
            why = f"not an address or port the engine reads the same way ({error})"
        if why is not None:
            return f"PortBindings[{port!r}]: {why}"
    return None
