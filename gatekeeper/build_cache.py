"""Whose layers a build may reuse: the classic builder's cache sources, both layers.

Every build gatekeeper lets through takes the classic builder (DOCKER_BUILDKIT=0), which
reuses, for each step, any local image whose parent and instruction match, whoever built it.
`docker image history` shows the steps of the operator's image, and its base may be one the
agent may use ([images] shared): a build FROM that base with the same RUN line would get the
operator's layer (whatever that step fetched or made) without running it.

Given cache sources (`--cache-from`, the API's `cachefrom`), the classic builder takes a
local layer only when it lies in the parent chain of one of them (moby image/cache: the
sources replace the whole local store). So both layers give every build the agent's own
images as its cache sources: the images labelled with its owner label (newest first, at
most OWNED_LIMIT) plus the ones it names itself, each of which must be an image it may use
(gatekeeper.image_scope; rule image-not-shared). With no source at all the build runs
without a cache (an empty list would mean the whole store). The agent's own rebuilds keep
their cache; a multi-stage build's earlier stages end in untagged images no owned image
descends from, so they are rebuilt unless the agent tags them (`--target NAME -t ...`).

The other direction: the classic builder leaves a build's host settings out of every step's
cache key (KEYLESS: extra hosts, ulimits, /dev/shm size, cpusets; the network; the proxy build
arguments). The operator's `RUN wget http://updates.example/...` built by the agent with
`updates.example` pointed at a server of its own (or through its proxy, or offline with a step
that tolerates failure) would be the layer the operator's next build of that step reuses: the
newest match wins. Builds with any of them are refused (rule build-cache-key); what is written
into the RUN step itself is part of its key.

Pure: the engine questions (the owned images, the named ones) are each layer's
(gatekeeper.vetting.build_cache for the CLI layer, gatekeeper.proxy.images for the API).
"""

from __future__ import annotations

OWNED_LIMIT = 100  # the agent's newest images given as sources; older ones only through their children


def cache_sources(named: list[str], owned: list[str]) -> list[str]:
    """The cache sources of one build: what the agent named (already judged), then its own
    images, each once; [] means the build must run with no cache."""
    return list(dict.fromkeys([*named, *owned[:OWNED_LIMIT]]))



RULE = "build-cache-key"


class Keyless:
    """A build input the classic builder hands each RUN step's container (moby
    builder/dockerfile hostConfigFromOptions) but leaves out of the step's cache key, which is
    only the parent image and the step's container config (image/cache compare): the same
    step built with it matches the same key, and the newest match is the one reused. `flag`
    (docker build), `query` (POST /build) and `compose` (a service's build key) are its
    spellings ("" where there is none), `unset` the query values that mean "not given"."""

    __slots__ = ("compose", "effect", "flag", "instead", "query", "unset")

    def __init__(self, flag: str, query: str, compose: str, unset: tuple[str, ...], effect: str,
                 instead: str) -> None:
        self.flag, self.query, self.compose, self.unset = flag, query, compose, unset
        self.effect, self.instead = effect, instead


# Each of these changes what a RUN step makes without changing its key. Built by the agent,
# such a step becomes the layer the operator's next build of the same step reuses (the newest
# match wins). Refused in builds at both layers (rule build-cache-key). Not here, and why:
# cgroupparent (pinned to [limits] build_cgroup_parent), memory/memswap/cpushares/cpuquota/
# cpuperiod (the policy's caps, injected: a step they kill commits no layer), isolation (only
# the default), securityopt (refused: flag-security-opt, unknown to the proxy), build args
# other than the proxy ones (a declared ARG used by a step enters its key: `|N ARG=value`).
KEYLESS: tuple[Keyless, ...] = (
    Keyless("add-host", "extrahosts", "extra_hosts", ("",),
            "its names resolve to the addresses you give",
            "write the address into the RUN step itself (e.g. curl --resolve)"),
    Keyless("ulimit", "ulimits", "ulimits", ("", "null", "[]"),
            "a step under other limits (open files, file size, processes) makes less or other output",
            "set a limit inside the RUN step (ulimit -n N; command)"),
    Keyless("shm-size", "shmsize", "shm_size", ("", "0"),
            "a step sees another /dev/shm",
            "the engine's default /dev/shm applies to builds"),
    Keyless("cpuset-cpus", "cpusetcpus", "", ("",),
            "a step sees other CPUs (nproc, worker counts written into files)",
            "the policy's CPU cap applies to builds (--cpu-quota within it)"),
    Keyless("cpuset-mems", "cpusetmems", "", ("",),
            "a step sees other memory nodes",
            "the engine's default applies to builds"),
)
KEYLESS_FLAGS = {entry.flag: entry for entry in KEYLESS}
KEYLESS_QUERY = {entry.query: entry for entry in KEYLESS}
KEYLESS_COMPOSE = {entry.compose: entry for entry in KEYLESS if entry.compose}

# moby builder/dockerfile buildargs.go builtinAllowedBuildArgs: usable by every step without an
# ARG, and left out of its key unless the Dockerfile declares them (any other build argument a
# step sees is one it declares, which enters its key). A step built with `http_proxy` = the
# agent's proxy matches the operator's same step built with the operator's proxy.
PROXY_ARGUMENTS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})

# Networks a build's steps may use: the engine's default bridge, as the operator's builds do.
DEFAULT_NETWORKS = frozenset({"", "default", "bridge"})
# Left to each layer's own network check (host-only services: flag-network, compose-network).
HOST_NETWORKS = ("host", "container:")


def keyless_refusal(where: str, effect: str, instead: str) -> Exception:
    from gatekeeper.errors import Denied

    return Denied(f"{where} is not allowed in builds: the classic builder leaves it out of the steps' "
                  f"cache keys ({effect}), so a step built with it would be the layer other builds of the "
                  f"same step reuse, the operator's too; {instead}", rule=RULE)


def check_query(query: dict[str, list[str]]) -> None:
    """POST /build: every keyless input left unset."""
    for key, entry in KEYLESS_QUERY.items():
        if any(value.strip() not in entry.unset for value in query.get(key, [])):
            # Stops: a step made under the agent's conditions reused by the operator's build.
            raise keyless_refusal(f"build {key}", entry.effect, entry.instead)


def check_network(network: str, where: str) -> None:
    """The build's network: the default bridge only (host and container: are each layer's)."""
    if network in DEFAULT_NETWORKS or network.startswith(HOST_NETWORKS):
        return
    if network == "none":
        # Stops: the operator's tolerant fetch step (`|| true`) reused empty, built offline.
        raise keyless_refusal(f"{where} 'none'", "a step's fetches fail; one that tolerates it makes an "
                              "empty or fallback layer", "builds use the default network")
    # Stops: a network of the agent's where its container answers for the operator's update host.
    raise keyless_refusal(f"{where} {network[:80]!r}", "on a network of yours your containers answer "
                          "for any name (an alias)", "builds use the default network; fetch from your "
                          "containers by address in the RUN step itself")


def check_arguments(names: list[str], where: str) -> None:
    """Build arguments: none of the proxy ones the builder keeps out of the key."""
    for name in names:
        if name in PROXY_ARGUMENTS:
            # Stops: the operator's fetch step built through the agent's proxy, reused by the operator.
            raise keyless_refusal(f"{where} {name}", "the builder keeps its proxy arguments out of the key "
                                  "unless the Dockerfile declares them", "write the proxy into the RUN step "
                                  "itself (RUN http_proxy=http://... wget ...) or pass it as a build "
                                  "argument of another name (ARG PROXY)")


# The build's memory and CPU are in no step's key either, but they are the policy's caps: the
# agent may give its steps more than the policy's defaults (within the caps: gatekeeper.vetting.
# limits), never less, so a step cannot be made to fail softer (`|| true`, a timeout) than under
# the defaults every build of the agent's gets anyway. API query names; the CLI's flags map here.
RESOURCE_FLAGS = {"memory": "memory", "memory-swap": "memswap", "cpu-quota": "cpuquota",
                  "cpu-period": "cpuperiod", "cpu-shares": "cpushares"}
DEFAULT_CPU_PERIOD = 100_000
DEFAULT_CPU_SHARES = 1024  # the kernel's default weight: fewer is less CPU under contention


def check_resources(given: dict[str, str], default_memory: str, default_cpus: float, where: str) -> None:
    """`given`: the build's memory/memswap/cpuquota/cpuperiod/cpushares as typed or sent."""
    from gatekeeper.units import plain_int, ram_in_bytes

    floor = ram_in_bytes(default_memory) if default_memory else None
    memory = ram_in_bytes(given.get("memory") or "0") or 0
    swap = ram_in_bytes(given.get("memswap") or "0") if given.get("memswap") != "-1" else 0
    quota = plain_int(given.get("cpuquota") or "0") or 0
    period = plain_int(given.get("cpuperiod") or "0") or DEFAULT_CPU_PERIOD
    shares = plain_int(given.get("cpushares") or "0") or 0
    effective = memory or floor
    why = "the policy's defaults (default_memory, default_cpus) are the least a build gets"
    if memory > 0 and (floor is None or memory < floor):
        # Stops: the operator's tolerant step built by the agent under a memory limit that kills it.
        raise keyless_refusal(f"{where} memory {given['memory'][:40]!r}", "a step killed for memory "
                              "that tolerates it makes a degraded layer", why)
    if swap and (not effective or swap < 2 * effective):
        raise keyless_refusal(f"{where} memory-swap {given['memswap'][:40]!r}", "less swap than the "
                              "default (as much as the memory) kills a step sooner", why)
    if quota > 0 and (not default_cpus or quota < default_cpus * period):
        # Stops: the operator's step with a timeout (`timeout 10 wget || true`) starved of CPU.
        raise keyless_refusal(f"{where} cpu-quota {given['cpuquota'][:40]!r}", "a step with a timeout "
                              "starved of CPU makes a degraded layer", why)
    if 0 < shares < DEFAULT_CPU_SHARES:
        raise keyless_refusal(f"{where} cpu-shares {given['cpushares'][:40]!r}", "a step starved of CPU "
                              "under contention", "the default weight (1024) is the least")
