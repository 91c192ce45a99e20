"""Addresses the agent picks (gatekeeper.vetting.addresses): subnets, fixed IPs, MACs.

The attack: a network with an agent-chosen subnet makes the engine add a host
route to the agent's bridge (the host's traffic for that range reaches the
agent's container), and a chosen MAC clones a neighbour's. Each table has both
sides: with no [network] subnets every chosen address is refused; with a policy
subnet, addresses inside it pass unless they overlap a host route, a host
address or another engine network, which the world reports from /proc and the engine.
"""

# One case per line keeps each command beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.engine_objects import QUERY_FORMATS
from gatekeeper.errors import PolicyError
from gatekeeper.policy import load_policy
from gatekeeper.vetting import addresses
from tests.fakes import StaticWorld

# The host as /proc shows it: eth0 192.0.2.2/24 with a default route, a VPN route
# 203.0.113.0/25, IPv6 fd00::2/64; the engine has 'bridge' (172.17.0.0/16) and
# the agent's own 'app_grab' (198.51.100.0/24 on br-0123456789ab).
ROUTE = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "tun0\t007100CB\t00000000\t0001\t0\t0\t0\t80FFFFFF\t0\t0\t0\n"
    "br-0123456789ab\t006433C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
)
IPV6_ROUTE = (
    "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n"
)
FIB_TRIE = (
    "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n"
    "     +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.0\n              /8 host LOCAL\n"
    "           |-- 192.0.2.2\n              /32 host LOCAL\n"
    "        |-- 192.0.2.255\n           /32 link BROADCAST\n"
)
IF_INET6 = "fd000000000000000000000000000002 04 40 00 82     eth0\n"
PROC = {"/proc/net/route": ROUTE.encode(), "/proc/net/ipv6_route": IPV6_ROUTE.encode(),
        "/proc/net/fib_trie": FIB_TRIE.encode(), "/proc/net/if_inet6": IF_INET6.encode()}
ENGINE_NETWORKS = "bridge\tdocker0\taaaa\t172.17.0.0/16 \napp_grab\t\t0123456789abcdef\t198.51.100.0/24 \n"


class HostWorld(StaticWorld):
    """/proc files and an engine with two networks; everything else as StaticWorld."""

    def __init__(self) -> None:
        super().__init__(files=PROC)

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        if args[:2] == ["network", "ls"]:
            return 0, b"aaaa\n0123456789abcdef\n", b""
        if args[:2] == ["network", "inspect"] and args[3] != QUERY_FORMATS["network"]:  # not an owner lookup
            return 0, ENGINE_NETWORKS.encode(), b""
        return super().run_docker(policy, args, stdin, timeout)


def policy_with(tmp_path: Path, subnets: list[str], *, ipv6: bool = False):  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.toml"
    listed = ", ".join(f'"{s}"' for s in subnets)
    path.write_text(f'[commands]\nallowed = ["run", "create", "network create"]\n[network]\nsubnets = [{listed}]\n'
                    f'ipv6 = {str(ipv6).lower()}\n')
    return load_policy(str(path))


@pytest.fixture
def closed(tmp_path: Path):  # type: ignore[no-untyped-def]
    return policy_with(tmp_path, [])


@pytest.fixture
def opened(tmp_path: Path):  # type: ignore[no-untyped-def]
    return policy_with(tmp_path, ["198.51.100.0/24", "198.18.0.0/15", "203.0.113.0/24", "2001:db8:1::/48"],
                       ipv6=True)


# (command, rule with no [network] subnets and no ipv6, rule with the opened policy)
CLI_CASES = {
    "plain run": ("docker run --rm img", "allowed", "allowed"),
    "fixed ip in policy subnet": ("docker run --rm --network n --ip 198.18.0.5 img", "flag-ip", "allowed"),
    "fixed ip outside": ("docker run --rm --network n --ip 172.17.0.2 img", "flag-ip", "flag-ip"),
    "fixed ip6 in policy subnet": ("docker run --rm --network n --ip6 2001:db8:1::5 img", "flag-ip6", "allowed"),
    "fixed ip6 outside": ("docker run --rm --network n --ip6 fd00::3 img", "flag-ip6", "flag-ip6"),
    "ip garbage": ("docker run --rm --network n --ip 198.18.0.500 img", "flag-ip", "flag-ip"),
    "long syntax ip inside": ("docker run --rm --network name=n,ip=198.18.0.5 img", "flag-network", "allowed"),
    "long syntax ip outside": ("docker run --rm --network name=n,ip=192.0.2.1 img", "flag-network", "flag-network"),
    "long syntax ip6 outside": ("docker run --rm --network name=n,ip6=fd00::2 img", "flag-network", "flag-network"),
    "mac clone": ("docker run --rm --mac-address 02:42:ac:11:00:02 img", "flag-mac-address", "flag-mac-address"),
    "long syntax mac": ("docker run --rm --network name=n,mac-address=02:42:ac:11:00:02 img", "flag-network", "flag-network"),
    "link-local": ("docker create --link-local-ip 169.254.169.254 img", "flag-link-local-ip", "flag-link-local-ip"),
    "long syntax link-local": ("docker run --rm --network name=n,link-local-ip=169.254.169.254 img", "flag-network", "flag-network"),
    "network create, engine pools": ("docker network create n", "allowed", "allowed"),
    "network create, ipv6 engine pools": ("docker network create --ipv6 n", "network-ipv6", "allowed"),
    "network create, ipv6=true": ("docker network create --ipv6=true n", "network-ipv6", "allowed"),
    "network create, ipv6 then false": ("docker network create --ipv6 --ipv6=false n", "network-ipv6", "allowed"),
    "network create, ipv6=false": ("docker network create --ipv6=false n", "allowed", "allowed"),
    "network create, free subnet": ("docker network create --subnet 198.18.0.0/24 --gateway 198.18.0.1 --ip-range 198.18.0.128/25 --aux-address r=198.18.0.2 n", "flag-subnet", "allowed"),
    "network create, v6 subnet": ("docker network create --ipv6 --subnet 2001:db8:1:1::/64 n", "flag-subnet", "allowed"),
    "network create, host LAN": ("docker network create --subnet 192.0.2.0/24 n", "flag-subnet", "flag-subnet"),
    "network create, over VPN route": ("docker network create --subnet 203.0.113.0/26 n", "flag-subnet", "flag-subnet"),
    "network create, over engine network": ("docker network create --subnet 198.51.100.128/25 n", "flag-subnet", "flag-subnet"),
    "network create, loopback": ("docker network create --subnet 127.0.0.0/8 n", "flag-subnet", "flag-subnet"),
    "network create, host v6 LAN": ("docker network create --ipv6 --subnet fd00::/64 n", "flag-subnet", "flag-subnet"),
    "network create, host bits": ("docker network create --subnet 198.18.0.5/24 n", "flag-subnet", "flag-subnet"),
    "network create, gateway outside": ("docker network create --subnet 198.18.0.0/24 --gateway 192.0.2.1 n", "flag-subnet", "flag-gateway"),
    "network create, aux outside": ("docker network create --subnet 198.18.0.0/24 --aux-address x=192.0.2.2 n", "flag-subnet", "flag-aux-address"),
    "network create, macvlan": ("docker network create -d macvlan -o parent=eth0 n", "flag-opt", "flag-opt"),
    "network create, macvlan driver": ("docker network create -d macvlan n", "flag-driver", "flag-driver"),
    "network create, ipam plugin": ("docker network create --ipam-driver weird n", "network-ipam", "network-ipam"),
    "network create, ipam opt": ("docker network create --ipam-opt x=y n", "flag-ipam-opt", "flag-ipam-opt"),
    "network create, bridge name": ("docker network create -o com.docker.network.bridge.name=docker0 n", "flag-opt", "flag-opt"),
    "network create, config-from": ("docker network create --config-from other n", "flag-config-from", "flag-config-from"),
}


@pytest.mark.parametrize(("command", "closed_rule", "opened_rule"), CLI_CASES.values(), ids=CLI_CASES.keys())
def test_cli_addresses(closed, opened, command: str, closed_rule: str, opened_rule: str) -> None:  # type: ignore[no-untyped-def]
    assert decide(command, closed, HostWorld()).rule == closed_rule
    assert decide(command, opened, HostWorld()).rule == opened_rule


def test_network_create_gets_the_owner_label(opened) -> None:  # type: ignore[no-untyped-def]
    decision = decide("docker network create --subnet 198.18.0.0/24 n", opened, HostWorld())
    assert decision.argv is not None and "gatekeeper.owner=default" in decision.argv


class Ctx:
    def __init__(self, policy: object) -> None:
        self.policy = policy
        self.world = HostWorld()


def model_rule(policy: object, model: dict) -> str:
    from gatekeeper.errors import Denied

    try:
        addresses.vet_model_addresses(Ctx(policy), model)  # type: ignore[arg-type]
    except Denied as denial:
        return denial.rule
    return "allowed"


def ipam(*config: dict, **extra: object) -> dict:
    return {"networks": {"grab": {"name": "app_grab2", "ipam": {"config": list(config), **extra}}}}


def attached(**attachment: object) -> dict:
    return {"services": {"a": {"networks": {"grab": attachment}}}}


# (model, rule with no [network] subnets, rule with the opened policy)
MODEL_CASES = {
    "no ipam": ({"networks": {"default": {"name": "p_default"}}}, "allowed", "allowed"),
    "ipv6 network": ({"networks": {"default": {"name": "p_default", "enable_ipv6": True}}}, "network-ipv6", "allowed"),
    "ipv6 off": ({"networks": {"default": {"name": "p_default", "enable_ipv6": False}}}, "allowed", "allowed"),
    "ipam without config": (ipam(), "allowed", "allowed"),
    "route attack": (ipam({"subnet": "198.51.100.0/24", "gateway": "198.51.100.1"}), "network-subnet", "network-subnet"),
    "free subnet with gateway, range, aux": (ipam({"subnet": "198.18.4.0/24", "gateway": "198.18.4.1", "ip_range": "198.18.4.0/25", "aux_addresses": {"r": "198.18.4.2"}}), "network-subnet", "allowed"),
    "own network re-up": ({"networks": {"grab": {"name": "app_grab", "ipam": {"config": [{"subnet": "198.51.100.0/24"}]}}}}, "network-subnet", "allowed"),
    "host LAN": (ipam({"subnet": "192.0.2.0/25"}), "network-subnet", "network-subnet"),
    "v6 subnet": (ipam({"subnet": "2001:db8:1:2::/64"}), "network-subnet", "allowed"),
    "v6 host LAN": (ipam({"subnet": "fd00::/48"}), "network-subnet", "network-subnet"),
    "gateway elsewhere": (ipam({"subnet": "198.18.4.0/24", "gateway": "192.0.2.1"}), "network-subnet", "network-address"),
    "aux elsewhere": (ipam({"subnet": "198.18.4.0/24", "aux_addresses": {"x": "192.0.2.2"}}), "network-subnet", "network-address"),
    "no subnet": (ipam({"gateway": "198.18.4.1"}), "network-ipam", "network-ipam"),
    "unknown config key": (ipam({"subnet": "198.18.4.0/24", "magic": 1}), "network-ipam", "network-ipam"),
    "ipam driver": (ipam(driver="weird"), "network-ipam", "network-ipam"),
    "ipam default driver": (ipam(driver="default"), "allowed", "allowed"),
    "ipam options": (ipam(options={"x": "y"}), "network-ipam", "network-ipam"),
    "fixed v4 inside": (attached(ipv4_address="198.18.4.5"), "network-address", "allowed"),
    "fixed v4 neighbour": (attached(ipv4_address="172.17.0.2"), "network-address", "network-address"),
    "fixed v6 inside": (attached(ipv6_address="2001:db8:1::9"), "network-address", "allowed"),
    "link local": (attached(link_local_ips=["169.254.169.254"]), "network-address", "network-address"),
    "per-network mac": (attached(mac_address="02:42:ac:11:00:02"), "network-mac", "network-mac"),
    "aliases only": (attached(aliases=["db"]), "allowed", "allowed"),
}


@pytest.mark.parametrize(("model", "closed_rule", "opened_rule"), MODEL_CASES.values(), ids=MODEL_CASES.keys())
def test_compose_addresses(closed, opened, model: dict, closed_rule: str, opened_rule: str) -> None:  # type: ignore[no-untyped-def]
    assert model_rule(closed, model) == closed_rule
    assert model_rule(opened, model) == opened_rule


def test_proc_parsers_read_the_host() -> None:
    routes = [str(net) for net, _ in addresses.routes_v4(ROUTE.encode())]
    assert routes == ["192.0.2.0/24", "203.0.113.0/25", "198.51.100.0/24"]  # no default route
    assert [str(net) for net, _ in addresses.routes_v6(IPV6_ROUTE.encode())] == ["fd00::/64"]
    assert [str(n) for n in addresses.local_v4(FIB_TRIE.encode())] == ["127.0.0.0/8", "192.0.2.2/32"]
    assert [str(n) for n in addresses.local_v6(IF_INET6.encode())] == ["fd00::2/128"]


def test_policy_subnets_must_be_cidrs(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[network]\nsubnets = ["198.51.100.5/24"]\n')
    with pytest.raises(PolicyError, match=r"network\.subnets"):
        load_policy(str(path))
