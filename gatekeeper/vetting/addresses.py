"""Addresses the agent picks itself: subnets, fixed container addresses, MACs.

By default the engine picks every address from its own pools, and the agent
picks none. A subnet chosen by the agent becomes a host route to a new bridge:
the host's own connections to any address there (its resolver, a registry, the
cloud metadata address) reach the agent's container, and a subnet overlapping
the host's LAN cuts the host off. A chosen MAC takes a neighbour's frames on the
bridge. So:

* a subnet (compose `ipam.config[].subnet`, `network create --subnet`) must lie
  inside one of the policy's `[network] subnets` and overlap no host route
  (default routes apart), no interface address and no other engine network;
  the world answers from /proc/net/route, /proc/net/ipv6_route,
  /proc/net/fib_trie, /proc/net/if_inet6 and the engine's networks;
* a fixed address, range, gateway or aux address (`ipv4_address`,
  `ipv6_address`, `ip_range`, `gateway`, `aux_addresses`, `--ip`, `--ip6`,
  `--ip-range`, `--gateway`, `--aux-address`, `--network ip=..`) must lie inside
  a policy subnet (the engine itself keeps it inside its network's subnet and
  refuses one already in use there);
* MACs and link-local addresses are never the agent's (`mac_address`,
  `--mac-address`, `link_local_ips`, `--link-local-ip`): refused by the grammar
  and compose tables, and here for the per-network forms;
* IPAM drivers other than the default and IPAM options are refused.

With no `[network] subnets` (the default) every agent-chosen address is refused.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from ipaddress import IPv4Network, IPv6Network
    from typing import Any

    from gatekeeper.grammar.pflag import FlagUse, Parsed
    from gatekeeper.policy import Policy
    from gatekeeper.vetting.context import Context

    Network = IPv4Network | IPv6Network

RULE_SUBNET = "network-subnet"
RULE_IPV6 = "network-ipv6"
# Stops: a host setting changed by the agent. Since docker 27 the engine sets
# net.ipv6.conf.all.forwarding=1 when it makes an IPv6 bridge (with ip6tables, the default);
# a host that configures IPv6 from router advertisements then stops taking them (accept_ra=1
# ignores them while forwarding) and loses its IPv6 routes when they expire.
IPV6_WHY = ("an IPv6 network makes the engine turn on the host's IPv6 forwarding, after which a host "
            "configured by router advertisements stops taking them; use an IPv4 network, or ask the "
            "operator for [network] ipv6 = true")
RULE_ADDRESS = "network-address"
RULE_IPAM = "network-ipam"
RULE_MAC = "network-mac"

# Engine networks, one line each: name, bridge interface, id, subnets.
NETWORK_FORMAT = (
    '{{.Name}}\t{{index .Options "com.docker.network.bridge.name"}}\t{{.Id}}\t'
    "{{range .IPAM.Config}}{{.Subnet}} {{end}}"
)
IPAM_CONFIG_KEYS = frozenset({"subnet", "ip_range", "gateway", "aux_addresses"})
DEFAULT_IPAM_DRIVERS = frozenset({"", "default"})
LOCAL_NETWORK_DRIVERS = frozenset({"bridge"})
_IPAM_WHY = "an IPAM plugin hands out any address (the default driver only)"
_MAC_WHY = "a chosen MAC can clone a neighbour's and take its frames on the bridge (the engine picks one)"
_LINK_LOCAL_WHY = "link-local addresses are the engine's to assign (169.254/16 holds the metadata address)"


def policy_subnets(policy: Policy) -> list[Network]:
    from ipaddress import ip_network

    return [ip_network(text) for text in policy.subnets]


def parse_network(text: str, what: str) -> Network:
    """A CIDR in canonical form: host bits set ('10.0.0.5/24') are refused, not guessed."""
    from ipaddress import ip_network

    try:
        return ip_network(text.strip(), strict=True)
    except ValueError:
        raise Denied(f"{what} {text!r} is not a subnet in CIDR form (a.b.c.0/24)", rule=RULE_SUBNET) from None


def parse_address(text: str, what: str) -> Network:
    """One address as a single-address network; a CIDR (ip_range) as itself."""
    from ipaddress import ip_network

    try:
        return ip_network(text.strip(), strict=True)
    except ValueError:
        raise Denied(f"{what} {text!r} is not an IP address or range", rule=RULE_ADDRESS) from None


def within(inner: Network, outer: Network) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]  # same version: both v4 or v6


def check_address(text: str, what: str, policy: Policy) -> None:
    """A fixed address, range or gateway: inside one of the policy's subnets."""
    address = parse_address(text, what)
    allowed = policy_subnets(policy)
    if not any(within(address, subnet) for subnet in allowed):
        raise Denied(f"{what} {text!r} is not allowed: {allowed_text(allowed)}", rule=RULE_ADDRESS)


def check_subnet(text: str, what: str, ctx: Context, reused: str = "") -> None:
    """A subnet becomes a host route: inside the policy's subnets, overlapping nothing
    the host or the engine already uses. `reused` names the network the subnet is for
    (compose re-running `up` finds its own network, bridge and route in place)."""
    subnet = parse_network(text, what)
    allowed = policy_subnets(ctx.policy)
    if not any(within(subnet, outer) for outer in allowed):
        raise Denied(f"{what} {text!r} is not allowed: {allowed_text(allowed)}", rule=RULE_SUBNET)
    for taken, owner in taken_networks(ctx, reused):
        if subnet.version == taken.version and subnet.overlaps(taken):
            raise Denied(f"{what} {text!r} is not allowed: it overlaps {owner} {taken} "
                         "(a route to the agent's bridge would take the host's traffic)", rule=RULE_SUBNET)


def allowed_text(allowed: list[Network]) -> str:
    if not allowed:
        return "the engine picks addresses from its own pools (policy [network] subnets is empty)"
    return f"use an address inside {', '.join(str(s) for s in allowed)} (policy [network] subnets)"


# ---------------------------------------------------------------- the world's networks


def taken_networks(ctx: Context, reused: str) -> list[tuple[Network, str]]:
    """Host routes (not the default ones), interface addresses and engine networks;
    the network named `reused` and the routes on its bridge are left out."""
    read = ctx.world.read_file
    engine = engine_networks(ctx)
    skipped = {bridge for name, bridge, _ in engine if name == reused and reused}
    taken = [(net, f"the host route via {dev}") for net, dev in routes_v4(read("/proc/net/route"))]
    taken += [(net, f"the host route via {dev}") for net, dev in routes_v6(read("/proc/net/ipv6_route"))]
    taken = [(net, owner) for net, owner in taken if owner.rsplit(" ", 1)[-1] not in skipped]
    taken += [(net, "the host address") for net in local_v4(read("/proc/net/fib_trie"))]
    taken += [(net, "the host address") for net in local_v6(read("/proc/net/if_inet6"))]
    for name, _, subnets in engine:
        if name != reused or not reused:
            taken += [(net, f"engine network {name!r}") for net in subnets]
    return taken


def engine_networks(ctx: Context) -> list[tuple[str, str, list[Network]]]:
    """(name, bridge interface, subnets) of every network the engine has."""
    run = ctx.world.run_docker
    status, out, _ = run(ctx.policy, ["network", "ls", "-q", "--no-trunc"], None, 30.0)
    if status != 0:
        raise Denied("cannot list the engine's networks (docker network ls failed)", rule=RULE_SUBNET)
    ids = out.decode("ascii", "replace").split()
    if not ids:
        return []
    args = ["network", "inspect", "--format", NETWORK_FORMAT, "--", *ids]
    status, out, _ = run(ctx.policy, args, None, 30.0)
    if status != 0:
        raise Denied("cannot read the engine's networks (docker network inspect failed)", rule=RULE_SUBNET)
    return [engine_line(line) for line in out.decode("utf-8", "replace").splitlines() if line.strip()]


def engine_line(line: str) -> tuple[str, str, list[Network]]:
    from ipaddress import ip_network

    name, bridge, ident, subnets = [*line.split("\t"), "", "", ""][:4]
    return name, bridge or f"br-{ident[:12]}", [ip_network(s, strict=False) for s in subnets.split()]


def routes_v4(text: bytes) -> list[tuple[Network, str]]:
    """/proc/net/route: Iface Destination Gateway Flags ... Mask, little-endian hex."""
    from ipaddress import IPv4Address, ip_network

    out = []
    for line in text.decode("ascii", "replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = IPv4Address(int.from_bytes(bytes.fromhex(fields[1]), "little"))
        mask = bin(int.from_bytes(bytes.fromhex(fields[7]), "little")).count("1")
        if mask:  # a default route overlaps everything: it is not an address the host uses
            out.append((ip_network(f"{dest}/{mask}", strict=False), fields[0]))
    return out


def routes_v6(text: bytes) -> list[tuple[Network, str]]:
    """/proc/net/ipv6_route: dest(32 hex) prefix(hex) src src_prefix next_hop metric ref use flags iface."""
    from ipaddress import IPv6Address, ip_network

    out = []
    for line in text.decode("ascii", "replace").splitlines():
        fields = line.split()
        if len(fields) < 10 or fields[9] == "lo":
            continue  # lo holds the host's own addresses (if_inet6) and unreachable routes
        prefix = int(fields[1], 16)
        if prefix:
            out.append((ip_network(f"{IPv6Address(int(fields[0], 16))}/{prefix}", strict=False), fields[9]))
    return out


def local_v4(text: bytes) -> list[Network]:
    """/proc/net/fib_trie: an address line '|-- A' followed by '/N host LOCAL'."""
    from ipaddress import ip_network

    out, last = set(), ""
    for line in text.decode("ascii", "replace").splitlines():
        words = line.split()
        if words[:1] == ["|--"] and len(words) == 2:
            last = words[1]
        elif len(words) >= 3 and words[0].startswith("/") and words[1:3] == ["host", "LOCAL"] and last:
            out.add(ip_network(f"{last}{words[0]}", strict=False))
    return sorted(out, key=str)


def local_v6(text: bytes) -> list[Network]:
    """/proc/net/if_inet6: address(32 hex) ifindex prefix scope flags name."""
    from ipaddress import IPv6Address, ip_network

    out = []
    for line in text.decode("ascii", "replace").splitlines():
        fields = line.split()
        if len(fields) == 6:
            out.append(ip_network(IPv6Address(int(fields[0], 16))))
    return out


# ---------------------------------------------------------------- docker run/create, network create


def check_flag_address(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """--ip, --ip6, --ip-range, --gateway, --aux-address NAME=IP: inside [network] subnets."""
    value = use.value or ""
    if use.flag.long == "aux-address":
        value = value.partition("=")[2]
    try:
        check_address(value, use.spelled, ctx.policy)
    except Denied as denial:
        raise Denied(denial.message, rule=f"flag-{use.name}") from None  # flags name their rule


def check_flag_subnet(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """network create --subnet: a new host route, so inside the policy's subnets and overlapping nothing."""
    try:
        check_subnet(use.value or "", use.spelled, ctx)
    except Denied as denial:
        raise Denied(denial.message, rule=f"flag-{use.name}") from None


def refuse_ipv6(what: str, policy: Policy) -> None:
    if not policy.network_ipv6:
        raise Denied(f"{what} is not allowed: {IPV6_WHY}", rule=RULE_IPV6)


def vet_network_create(ctx: Context) -> None:
    """network create: the bridge driver and the default IPAM driver only; IPv6 as the policy says."""
    from gatekeeper.grammar.pflag import bool_value

    for use in ctx.parsed.uses:
        if use.flag.long == "ipv6" and bool_value(use):
            refuse_ipv6(use.spelled, ctx.policy)
        if use.flag.long == "driver" and (use.value or "") not in LOCAL_NETWORK_DRIVERS:
            raise Denied(f"{use.spelled} {use.value!r} is not allowed: macvlan/ipvlan/overlay/host drivers "
                         "put containers on the host's interfaces (bridge only)", rule="flag-driver")
        if use.flag.long == "ipam-driver" and (use.value or "") not in DEFAULT_IPAM_DRIVERS:
            raise Denied(f"{use.spelled} {use.value!r} is not allowed: {_IPAM_WHY}", rule=RULE_IPAM)


# ---------------------------------------------------------------- compose


def vet_model_addresses(ctx: Context, model: dict[str, Any]) -> None:
    """Top-level networks' ipam and every service's per-network addresses."""
    networks = model.get("networks")
    for key, network in (networks if isinstance(networks, dict) else {}).items():
        if isinstance(network, dict) and network.get("enable_ipv6") not in (None, False):
            refuse_ipv6(f"compose top-level network {key!r}: enable_ipv6", ctx.policy)
        if isinstance(network, dict) and network.get("ipam") is not None:
            where = f"compose top-level network {key!r}: ipam"
            check_ipam(ctx, where, network["ipam"], str(network.get("name") or key))
    services = model.get("services")
    for name, service in (services if isinstance(services, dict) else {}).items():
        attachments = service.get("networks") if isinstance(service, dict) else None
        for net, attachment in (attachments if isinstance(attachments, dict) else {}).items():
            if isinstance(attachment, dict):
                check_attachment(ctx, f"compose service {name!r}: networks.{net}", attachment)


def check_ipam(ctx: Context, where: str, ipam: object, name: str) -> None:
    if not isinstance(ipam, dict):
        raise Denied(f"{where}: expected a mapping", rule=RULE_IPAM)
    if str(ipam.get("driver") or "") not in DEFAULT_IPAM_DRIVERS:
        raise Denied(f"{where}.driver {ipam['driver']!r} is not allowed: {_IPAM_WHY}", rule=RULE_IPAM)
    if ipam.get("options"):
        raise Denied(f"{where}.options is not allowed: IPAM driver options are not vetted", rule=RULE_IPAM)
    unknown = set(ipam) - {"driver", "options", "config"}
    if unknown:
        key = sorted(unknown)[0]
        raise Denied(f"{where}: key {key!r} is not allowed (unknown to gatekeeper)", rule=RULE_IPAM)
    config = ipam.get("config") or []
    for entry in config if isinstance(config, list) else [config]:
        check_ipam_entry(ctx, f"{where}.config", entry, name)


def check_ipam_entry(ctx: Context, where: str, entry: object, name: str) -> None:
    if not isinstance(entry, dict) or set(entry) - IPAM_CONFIG_KEYS or "subnet" not in entry:
        raise Denied(f"{where}: each entry needs a subnet and only {', '.join(sorted(IPAM_CONFIG_KEYS))}",
                     rule=RULE_IPAM)
    check_subnet(str(entry["subnet"]), f"{where}.subnet", ctx, reused=name)
    for key in ("ip_range", "gateway"):
        if entry.get(key):
            check_address(str(entry[key]), f"{where}.{key}", ctx.policy)
    aux = entry.get("aux_addresses") or {}
    for host, address in (aux.items() if isinstance(aux, dict) else [("?", aux)]):
        check_address(str(address), f"{where}.aux_addresses.{host}", ctx.policy)


def check_attachment(ctx: Context, where: str, attachment: dict[str, Any]) -> None:
    if attachment.get("mac_address"):
        raise Denied(f"{where}.mac_address is not allowed: {_MAC_WHY}", rule=RULE_MAC)
    if attachment.get("link_local_ips"):
        raise Denied(f"{where}.link_local_ips is not allowed: {_LINK_LOCAL_WHY}", rule=RULE_ADDRESS)
    for key in ("ipv4_address", "ipv6_address"):
        if attachment.get(key):
            check_address(str(attachment[key]), f"{where}.{key}", ctx.policy)
