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

The other direction: the classic builder leaves a build's extra hosts (`--add-host`, the API's
`extrahosts`, compose `extra_hosts`) out of every step's cache key. The operator's `RUN wget
http://updates.example/...` built by the agent with `updates.example` pointed at a server of its
own would be the layer the operator's next build of that step reuses. Builds with extra hosts
are refused (rule build-cache-key); an address written into the RUN step itself is part of its
key. (A proxy build argument, `http_proxy`, is part of the key on the engines tested: 20.10.)

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


def check_keyed(extra_hosts: list[str], where: str) -> None:
    """Refuse extra hosts in a build: the classic builder leaves them out of the steps' cache keys."""
    from gatekeeper.errors import Denied

    if any(host.strip() for host in extra_hosts):
        # Stops: the agent's layer of the operator's fetch step, fetched from the agent's server.
        raise Denied(f"{where}: extra hosts are not allowed in builds: the classic builder leaves them out "
                     "of the steps' cache keys, so a step built with them would be reused by other builds "
                     "of the same step (the operator's too); write the address into the RUN step itself "
                     "(e.g. curl --resolve)", rule=RULE)
