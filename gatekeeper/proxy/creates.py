"""Volume and network create bodies: the local/bridge drivers with no driver options,
addresses inside the policy's [network] subnets, labels checked and the owner label
added (gatekeeper.proxy.containers walks the bodies the same way)."""

from __future__ import annotations

import json

from gatekeeper.errors import Denied
from gatekeeper.proxy.containers import Body, allow, parse_body, walk, zero

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gatekeeper.proxy.containers import Check
    from gatekeeper.proxy.contract import ApiVerdict
    from gatekeeper.proxy.vet import Call


def labelled(body: Body, field: str, value: object) -> object:
    from gatekeeper.proxy.labels import owner_labelled

    return owner_labelled(body.call, value, field)


def local_driver(body: Body, field: str, value: object) -> None:
    if value not in (None, "", "local"):
        # Stops: a volume plugin mapping any host path or remote share into containers.
        raise Denied(f"{field} {value!r} is not allowed: volume drivers other than local can map any host "
                     "path", rule="volume-backed")


def given_name(kind: str) -> Check:
    """A `Name` field: the [names] prefix (gatekeeper.proxy.names); empty: the engine picks one."""

    def check(body: Body, field: str, value: object) -> object:
        if value not in (None, "") and not str(value).lower().startswith("gatekeeper-"):
            from gatekeeper.proxy.names import check_given  # gatekeeper-*: refused below as ours

            check_given(body.call, kind, str(value), f"{kind} create {field}")
        return value

    return check


VOLUME_FIELDS = {
    "Name": given_name("volume"), "Driver": local_driver, "Labels": labelled,
    # Stops: local-driver options (type=none,o=bind,device=/) that bind-mount any host path.
    "DriverOpts": zero("volume-opt", "local-driver options (type=none,o=bind,device=/) bind-mount any "
                       "host path"),
    "ClusterVolumeSpec": zero("cluster", "swarm cluster volumes"),
}


def vet_volume_create(call: Call) -> ApiVerdict:
    from gatekeeper.vetting.volumes import RESERVED_VOLUME_PREFIX

    raw = parse_body(call.request.body)
    raw.setdefault("Labels", None)
    checked = walk(Body(call), raw, VOLUME_FIELDS, "body")
    name = checked.get("Name") or ""
    if not isinstance(name, str) or name.lower().startswith(RESERVED_VOLUME_PREFIX):
        # Stops: squatting the names of gatekeeper's own records (pulled images).
        raise Denied(f"volume names starting with {RESERVED_VOLUME_PREFIX!r} are gatekeeper's own; choose "
                     "another name", rule="foreign-volume")
    from gatekeeper.proxy.disk import check_disk_budget

    check_disk_budget(call, f"volume create {name!r}")
    call.body = json.dumps(checked, ensure_ascii=False, separators=(",", ":")).encode()
    return call.allow()


# ---------------------------------------------------------------- networks


def bridge_driver(body: Body, field: str, value: object) -> None:
    if value not in (None, "", "bridge"):
        raise Denied(f"{field} {value!r} is not allowed: macvlan/ipvlan/overlay/host drivers put containers "
                     "on the host's interfaces (bridge only)", rule="flag-driver")


def check_ipam(body: Body, field: str, value: object) -> object:
    from gatekeeper.vetting.addresses import DEFAULT_IPAM_DRIVERS, RULE_IPAM

    checked = walk(body, value, {"Driver": allow, "Config": check_pools, "Options": allow}, field)
    if str(checked.get("Driver") or "") not in DEFAULT_IPAM_DRIVERS:
        raise Denied(f"{field}.Driver {checked['Driver']!r} is not allowed: an IPAM plugin hands out any "
                     "address (the default driver only)", rule=RULE_IPAM)
    if checked.get("Options"):
        raise Denied(f"{field}.Options is not allowed: IPAM driver options are not vetted", rule=RULE_IPAM)
    return checked


def check_pools(body: Body, field: str, value: object) -> object:
    from gatekeeper.vetting.addresses import check_address

    pools = []
    for index, pool in enumerate(value if isinstance(value, list) else [] if value is None else [value]):
        where = f"{field}[{index}]"
        checked = walk(body, pool, {"Subnet": allow, "IPRange": allow, "Gateway": allow,
                                    "AuxiliaryAddresses": allow}, where)
        if not checked.get("Subnet"):
            raise Denied(f"{where} needs a Subnet", rule="network-ipam")
        check_pool_subnet(body.call, str(checked["Subnet"]), f"{where}.Subnet")
        for key in ("IPRange", "Gateway"):
            if checked.get(key):
                check_address(str(checked[key]), f"{where}.{key}", body.call.policy)
        aux = checked.get("AuxiliaryAddresses") or {}
        for host, address in aux.items() if isinstance(aux, dict) else [("?", aux)]:
            check_address(str(address), f"{where}.AuxiliaryAddresses.{host}", body.call.policy)
        pools.append(checked)
    return pools


def check_pool_subnet(call: Call, text: str, what: str) -> None:
    """Inside the policy's subnets, overlapping no network the engine has (the host's own
    routes are the CLI layer's check: the proxy reads nothing of the host)."""
    from gatekeeper.proxy import objects
    from gatekeeper.vetting.addresses import RULE_SUBNET, allowed_text, parse_network, policy_subnets, within

    subnet = parse_network(text, what)
    allowed = policy_subnets(call.policy)
    if not any(within(subnet, outer) for outer in allowed):
        raise Denied(f"{what} {text!r} is not allowed: {allowed_text(allowed)}", rule=RULE_SUBNET)
    for network in objects.listing(call.engine, "/networks", "the engine's networks"):
        for pool in ((network.get("IPAM") or {}).get("Config") or []):
            taken = parse_network(str(pool.get("Subnet") or "0.0.0.0/32"), "engine subnet")
            if subnet.version == taken.version and subnet.overlaps(taken):
                raise Denied(f"{what} {text!r} is not allowed: it overlaps engine network "
                             f"{network.get('Name')!r} {taken}", rule=RULE_SUBNET)


def check_ipv6(body: Body, field: str, value: object) -> None:
    """An IPv6 network turns on the host's IPv6 forwarding (gatekeeper.vetting.addresses.IPV6_WHY)."""
    from gatekeeper.vetting.addresses import refuse_ipv6

    if value is not None and value is not False:
        refuse_ipv6(f"{field} {value!r}", body.call.policy)


NETWORK_FIELDS = {
    "Name": given_name("network"), "CheckDuplicate": allow, "Driver": bridge_driver, "Internal": allow,
    "Attachable": allow,
    "EnableIPv4": allow, "EnableIPv6": check_ipv6, "IPAM": check_ipam, "Labels": labelled,
    "Options": zero("opt", "bridge driver options pick host interface names, MTUs and iptables behaviour"),
    "Scope": zero("scope", "swarm scope"), "Ingress": zero("ingress", "the swarm routing mesh"),
    "ConfigOnly": zero("config-only", "configuration-only networks feed other drivers"),
    "ConfigFrom": zero("config-from", "copies another network's configuration (subnets, driver options) "
                       "unvetted"),
}


def vet_network_create(call: Call) -> ApiVerdict:
    raw = parse_body(call.request.body)
    raw.setdefault("Labels", None)
    checked = walk(Body(call), raw, NETWORK_FIELDS, "body")
    if not checked.get("Name"):
        raise Denied("a network needs a Name", rule="api-body")
    # Stops: a second network named like the operator's (engines before API 1.44 honour
    # CheckDuplicate=false); newer ones ignore the field and always check.
    checked["CheckDuplicate"] = True
    call.body = json.dumps(checked, ensure_ascii=False, separators=(",", ":")).encode()
    return call.allow()
