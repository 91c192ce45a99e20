"""Images at the API layer: pull (POST /images/create), build (POST /build) and the
tags both move, with the CLI layer's rules (gatekeeper.vetting.namespaces,
flag_checks, limits): a tag may name only a new image, the agent's own (owner
label, or a pull gatekeeper recorded for this profile), or one [shared] images
lists; [protect] images never move.
"""

from __future__ import annotations

from gatekeeper.engine_objects import IMAGE
from gatekeeper.errors import Denied
from gatekeeper.owner import OWNER_LABEL, PULLED_BY, PULLED_IMAGE, PULLED_TAG, PULLED_TAG_TIME
from gatekeeper.proxy import objects
from gatekeeper.vetting.namespaces import NEW, OWNED, SHARED, familiar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.proxy.contract import ApiVerdict
    from gatekeeper.proxy.vet import Call

GO_FALSE = ("", "0", "false", "False", "FALSE", "f", "F")


def pulled_by_agent(call: Call, ident: str, names: list[str], tagged: str) -> bool:
    """Every tag of the image is one this profile pulled through gatekeeper (pull records) and
    it pulled this very image: the records pin its LastTagTime `tagged` (gatekeeper.owner.
    PULLED_TAG_TIME); a record of an image removed since, whose ID and tag came back with the
    operator's pull, pins another. No pin: no record counts."""
    if not tagged:
        return False
    wanted = {PULLED_BY: call.profile, PULLED_IMAGE: ident, PULLED_TAG_TIME: tagged}
    filters = {"label": [f"{key}={value}" for key, value in wanted.items()]}
    records = objects.listing(call.engine, "/volumes?filters=" + objects.filters_query(filters),
                              f"the pulls of image {ident[:19]}")
    labelled = [v.get("Labels") for v in records]  # the engine's filter, checked again
    tags = {str(lab.get(PULLED_TAG, "")) for lab in labelled
            if isinstance(lab, dict) and all(lab.get(key) == value for key, value in wanted.items())}
    return bool(tags) and set(names) <= tags


def check_tag(call: Call, ref: str, what: str) -> str:
    """May `what` point `ref` at another image? NEW, OWNED or SHARED, or Denied
    (gatekeeper.vetting.namespaces.check_tag, in the same order)."""
    from gatekeeper.label_rules import protected_by, shared_by

    ref = familiar(ref)
    found = objects.lookup(call.engine, IMAGE, ref)
    protected = protected_by(call.ctx, IMAGE, [ref], {})
    if found is not None:
        protected = protected or protected_by(call.ctx, IMAGE, found.names, found.labels)
    if protected:
        # Stops: the operator's next `docker run` of a vital tag running the agent's image.
        raise Denied(f"{what} {ref!r} would re-point a protected tag ({protected})", rule="protected")
    if found is None:
        return NEW
    # A record of the operator's image that came back with the same ID and tag (after the
    # agent's was removed) pins another LastTagTime: not the agent's to re-point.
    if objects.owned(found, call.profile) or pulled_by_agent(call, found.ident, found.names, found.tagged):
        return OWNED
    if shared_by(call.ctx, "images", [ref]):
        return SHARED
    whose = f"owned by {found.labels[OWNER_LABEL]!r}" if OWNER_LABEL in found.labels else "not yours"
    # Stops: `build -t postgres:15` / a pull moving the operator's tag to another image.
    raise Denied(f"{what} {ref!r}: that tag names an image {whose} ({found.ident[7:19]}); building or "
                 "pulling would re-point it; use a tag of your own", rule="foreign-tag")


# ---------------------------------------------------------------- [images] shared: what the agent may use


def check_image_use(call: Call, word: str, what: str) -> dict[str, Any] | None:
    """The image `word` names is the agent's to run, build from or mount
    (gatekeeper.image_scope); its inspect object, or None when the engine has no such image
    (no one's local image: the engine fails, or the client pulls it first, a pull vetted and
    recorded as the agent's)."""
    found = objects.inspect(call.engine, IMAGE, word)
    if found is not None:
        check_found_use(call, word, found, what)
    return found


def check_found_use(call: Call, word: str, found: dict[str, Any], what: str) -> None:
    """may_use on the engine's answer; the pull records only when nothing else admits it."""
    from gatekeeper.image_scope import ImageFacts, may_use, refusal

    target = objects.proven(call.engine, IMAGE, objects.target_of(IMAGE, word, found), found)
    digests = found.get("RepoDigests")
    facts = ImageFacts(target.ident, target.names,
                       [str(d) for d in digests] if isinstance(digests, list) else [], target.labels)
    if may_use(call.policy, facts):
        return
    if may_use(call.policy, facts, pulled=pulled_by_agent(call, target.ident, [], objects.tag_time(found))):
        return
    raise refusal(word, facts, what)


# ---------------------------------------------------------------- pull


def vet_pull(call: Call) -> ApiVerdict:
    """POST /images/create: fromImage (a pull) only; fromSrc is `docker import`. A pull that
    brings a tag (or a digest) the engine did not have, or moves the agent's own tag, is
    recorded as this profile's once it succeeded (gatekeeper.proxy.pulls), as the CLI layer
    records it (gatekeeper.vetting.namespaces.vet_pull)."""
    if call.one("fromSrc") or "fromSrc" in call.query:
        # Stops: importing a tarball (from the request body or a URL the engine fetches) as an image.
        raise Denied("POST /images/create?fromSrc= (docker import) is not allowed; build from a Dockerfile",
                     rule="api-unvetted")
    image, tag = call.one("fromImage"), call.one("tag")
    if not image:
        raise Denied("POST /images/create needs fromImage", rule="api-query")
    if not tag and "@" not in image and ":" not in image.rpartition("/")[2]:
        # Stops: an empty tag pulls every tag of the repository at once (docker pull --all-tags).
        raise Denied("a pull without a tag pulls every tag of the repository; name the tag",
                     rule="foreign-tag")
    ref = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}" if tag else image
    check_image_source(call, ref, "pull")
    from gatekeeper.vetting.images import check_host_registry

    check_host_registry(ref, call.policy, "pull", call.engine.addresses)
    if "@" not in ref:
        when = check_tag(call, ref, "pull")
    else:  # by digest: no tag moves; an image the engine already has is not recorded as pulled
        when = NEW if objects.lookup(call.engine, IMAGE, familiar(ref)) is None else SHARED
    from gatekeeper.proxy.disk import check_disk_budget

    check_disk_budget(call, f"pull of {ref!r}")
    if when != SHARED:
        call.afterwards = ("pull-record", familiar(ref), when)
    return call.allow()


# ---------------------------------------------------------------- build

# Output types (BuildKit's exporters) an API build may use, as the CLI layer allows them.
OUTPUT_TYPES = frozenset({"", "moby", "image", "docker-image", "local", "cacheonly"})
REMOTE_OK = frozenset({"", "client-session"})


def vet_build(call: Call) -> ApiVerdict:
    """POST /build: a context in the body or the client's session; no remote context, no push,
    no host network, no cgroup of the agent's choosing; tags and labels as for the CLI."""
    remote = call.one("remote")
    if remote not in REMOTE_OK:
        # Stops: the engine fetching a git repository or URL (git on the host, credentials, SSRF).
        raise Denied(f"build remote={remote[:80]!r} is not allowed: remote contexts are fetched by the "
                     "engine; send a local context", rule="build-remote-context")
    from gatekeeper.build_cache import HOST_NETWORKS, check_network

    network = call.one("networkmode")
    if network.startswith(HOST_NETWORKS):
        # Stops: RUN steps on the host network reaching host-local services.
        raise Denied(f"build networkmode={network[:80]!r} is not allowed: RUN steps may use only the "
                     "default network", rule="flag-network")
    check_network(network, "build networkmode")
    if call.one("isolation") not in ("", "default"):
        raise Denied("build isolation is not allowed (the engine's default only)", rule="flag-isolation")
    check_outputs(call, call.one("outputs"))
    scope_cache(call)
    for tag in call.query.get("t", []):
        check_tag(call, tag, "build tag")
    check_build_dockerfile(call)
    label_build(call)
    limit_build(call)
    from gatekeeper.proxy.disk import check_disk_budget

    check_disk_budget(call, "build")
    from gatekeeper.build_records import quiet_build

    # the image the build's answer names (proxy.pulls); a quiet build names it another way
    call.afterwards = ("build-record", "quiet") if quiet_build(call.query.get("q", [])) else ("build-record",)
    return call.allow()


def built_images(call: Call) -> set[str]:
    """The image IDs this profile's build records name (gatekeeper.build_records)."""
    from gatekeeper.build_records import RECORD_PREFIX
    from gatekeeper.owner import BUILT_BY, BUILT_IMAGE

    filters = objects.filters_query({"label": [f"{BUILT_BY}={call.profile}"]})
    records = objects.listing(call.engine, "/volumes?filters=" + filters, "your build records")
    return {str((v.get("Labels") or {}).get(BUILT_IMAGE)) for v in records
            if str(v.get("Name", "")).startswith(RECORD_PREFIX) and isinstance(v.get("Labels"), dict)}


def build_json(text: str, what: str, rule: str) -> Any:
    """A build query parameter docker sends as JSON (any shape: the caller checks it, as after
    json.loads); one that does not parse is refused."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        raise Denied(f"build {what} is not JSON", rule=rule) from None


def check_outputs(call: Call, text: str) -> None:
    if not text:
        return
    outputs = build_json(text, "outputs", "flag-output")
    for entry in outputs if isinstance(outputs, list) else [outputs]:
        attrs = entry.get("Attrs") if isinstance(entry, dict) else None
        kind = str(entry.get("Type", "")) if isinstance(entry, dict) else "?"
        attrs = attrs if isinstance(attrs, dict) else {}
        if kind not in OUTPUT_TYPES:
            # Stops: registry pushes and tarball exports (docker push / save by another name).
            raise Denied(f"build output type {kind!r} is not allowed (image, local, cacheonly)",
                         rule="flag-output")
        if str(attrs.get("push", "")) not in GO_FALSE or str(attrs.get("push-by-digest", "")) not in GO_FALSE:
            raise Denied("build output push=true is not allowed: a push by another name", rule="flag-output")
        for name in str(attrs.get("name", "")).split(","):
            if name.strip():
                # Stops: name=postgres:15 on the image exporter (without t=) re-pointing any tag.
                check_tag(call, name.strip(), "build output name")


def check_cache_from(text: str) -> list[str]:
    """cachefrom: the images whose layers the builder may reuse, by name. A BuildKit cache spec
    (`--cache-from type=local,src=PATH`, a host directory) is no image name: refused as the CLI
    layer refuses the flag (the classic builder would only ignore it; BuildKit would read it)."""
    if not text:
        return []
    entries = build_json(text, "cachefrom", "flag-cache-from")
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise Denied("build cachefrom must be a list of image names", rule="flag-cache-from")
    for entry in entries:
        if "=" in entry or "," in entry:
            raise Denied(f"build cachefrom {entry[:80]!r} is not allowed: only image names (a cache spec "
                         "such as type=local reads a host directory)", rule="flag-cache-from")
    return entries


def scope_cache(call: Call) -> None:
    """The classic builder reuses any local image's layer whose parent and step match
    (gatekeeper.build_cache): the build gets the agent's own images as its only cache sources,
    each image it names in cachefrom must be one it may use, and with no source at all it runs
    with nocache (an absent cachefrom means the whole store). First, inputs the builder leaves
    out of the steps' cache keys are refused (gatekeeper.build_cache.KEYLESS, proxy build arguments)."""
    import json

    from gatekeeper.build_cache import (
        RESOURCE_FLAGS,
        cache_sources,
        check_arguments,
        check_query,
        check_resources,
    )

    check_query(call.query)
    caps = call.policy.caps
    check_resources({key: call.one(key) for key in RESOURCE_FLAGS.values()}, caps.default_memory,
                    caps.default_cpus, "build")
    arguments = build_json(call.one("buildargs") or "{}", "buildargs", "api-query")
    check_arguments([str(key) for key in arguments] if isinstance(arguments, dict) else [], "build buildargs")
    named = check_cache_from(call.one("cachefrom"))
    filters = objects.filters_query({"label": [f"{OWNER_LABEL}={call.profile}"]})
    listed = objects.listing(call.engine, "/images/json?filters=" + filters,
                             "your images (the build's cache sources)")
    labelled = list(dict.fromkeys(str(image["Id"]) for image in listed if isinstance(image.get("Id"), str)))
    # Only the agent's builds (gatekeeper.build_records): the operator's image built FROM the
    # agent's carries its label, and its layers must not become the agent's cache.
    built = built_images(call) if labelled else set()
    owned = [ident for ident in labelled if ident in built]
    for entry in named:
        if entry not in owned:
            # Stops: cachefrom=<the operator's image>: its layers reused by the agent's build.
            check_image_use(call, entry, "build cachefrom image")
    sources = cache_sources(named, owned)
    call.query.pop("cachefrom", None)
    if sources:
        call.query["cachefrom"] = [json.dumps(sources, separators=(",", ":"))]
    else:
        call.query["nocache"] = ["1"]


def check_build_dockerfile(call: Call) -> None:
    """The Dockerfile the engine reads from the context, with the CLI layer's check
    (gatekeeper.vetting.images check_dockerfile): ADD <url> (the engine fetches it on the
    host's network), and while [images] allowed lists patterns every image it makes the
    builder fetch or run (FROM, COPY --from, RUN --mount=from, ONBUILD, # syntax=)."""
    from gatekeeper.vetting.images import ADD_RULE, allowed_patterns, check_dockerfile

    if call.one("version") == "2" or call.one("remote") == "client-session":
        # Stops: a Dockerfile the proxy never sees (it comes over the BuildKit session).
        raise Denied("a BuildKit build sends its Dockerfile over a session the proxy cannot read, so its "
                     "ADD sources cannot be checked; build with the classic builder (DOCKER_BUILDKIT=0)",
                     rule=ADD_RULE)
    patterns = allowed_patterns(call.policy)
    if patterns:
        check_build_syntax_argument(call, patterns)
    name = call.one("dockerfile") or "Dockerfile"
    text = dockerfile_in_context(call, name)
    check_dockerfile(text, patterns, f"Dockerfile {name[:80]!r}")
    check_base_images(call, text, f"Dockerfile {name[:80]!r}", patterns)


def check_base_images(call: Call, text: str, where: str, patterns: list[str]) -> None:
    """The ONBUILD steps of the images the build starts FROM (gatekeeper.vetting.images),
    each looked up on the engine; one it does not have, or a build that pulls them anew, is refused."""
    from gatekeeper.vetting.images import (
        base_images,
        check_triggers,
        copied_images,
        refuse_missing,
        refuse_pull,
        same_platform,
    )

    if call.one("pull") not in (None, "", "0", "false", "False"):
        raise refuse_pull("build pull=")
    raw = build_json(call.one("buildargs") or "{}", "buildargs", "api-query")
    pairs = raw.items() if isinstance(raw, dict) else []
    arguments = {str(k): None if v is None else str(v) for k, v in pairs}
    copied = copied_images(text, where)
    for image, wanted in base_images(text, arguments, where, call.one("platform") or ""):
        found = objects.inspect(call.engine, IMAGE, image)
        if found is None:
            raise refuse_missing(image, where)
        check_found_use(call, image, found, f"{where}: FROM")
        if not same_platform(wanted, f"{found.get('Os')}/{found.get('Architecture')}"):
            raise refuse_missing(f"{image} for {wanted}", where)
        config = found.get("Config")
        triggers = config.get("OnBuild") if isinstance(config, dict) else None
        check_triggers(image, triggers, patterns, where)
        if isinstance(triggers, list):
            steps = "\n".join(str(step) for step in triggers)
            copied += copied_images(steps, f"{where}: FROM {image!r} ONBUILD")
    for image in dict.fromkeys(copied):
        if image != "scratch":
            check_image_use(call, image, f"{where}: COPY --from / RUN --mount from")


def check_build_syntax_argument(call: Call, patterns: list[str]) -> None:
    """buildargs BUILDKIT_SYNTAX names a frontend image, as --build-arg does at the CLI layer."""
    from gatekeeper.vetting.images import check_syntax_argument

    arguments = build_json(call.one("buildargs") or "{}", "buildargs", "api-query")
    if isinstance(arguments, dict) and "BUILDKIT_SYNTAX" in arguments:
        value = arguments["BUILDKIT_SYNTAX"]
        check_syntax_argument("BUILDKIT_SYNTAX" if value is None else f"BUILDKIT_SYNTAX={value}", patterns)


def dockerfile_in_context(call: Call, name: str) -> str:
    """The Dockerfile's text from the context tar as the engine unpacks it
    (gatekeeper.build_context); "" for no context at all."""
    import io

    from gatekeeper.build_context import dockerfile_text

    source = call.request.context
    if source is None:
        if not call.request.body:
            return ""  # no context: the engine finds no Dockerfile, nothing is fetched
        source = io.BytesIO(call.request.body)
    return dockerfile_text(source, name)


# `docker compose build` with the classic builder (DOCKER_BUILDKIT=0 behind the proxy) marks the
# image it builds with this label, and only with this value; nothing acts on it (compose reads it
# back only to show how an image was built). Accepted on builds as exactly this pair.
COMPOSE_BUILDER = ("com.docker.compose.image.builder", "classic")


def label_build(call: Call) -> None:
    """labels: the agent's checked as for --label (compose's classic-builder mark accepted),
    the owner label added."""
    import json

    from gatekeeper.proxy.labels import owner_labelled

    labels = build_json(call.one("labels") or "{}", "labels", "api-query")
    key, value = COMPOSE_BUILDER
    builder = isinstance(labels, dict) and labels.get(key) == value
    if builder:
        labels = {k: v for k, v in labels.items() if k != key}
    labelled = owner_labelled(call, labels, "build label")
    if builder:
        labelled = {key: value, **labelled}
    call.query["labels"] = [json.dumps(labelled, separators=(",", ":"))]


def limit_build(call: Call) -> None:
    """The classic builder's RUN limits (gatekeeper.vetting.limits.vet_build_limits)."""
    from gatekeeper.vetting.limits import (
        BUILD_CPU_PERIOD,
        caps_of,
        check_memory,
        check_memory_swap,
    )

    caps = caps_of(call.policy)
    if call.one("cgroupparent") not in ("", caps.build_cgroup_parent):
        # Stops: RUN steps placed in a host cgroup of the agent's choosing, outside the limits.
        raise Denied("build cgroupparent is not allowed: the policy's build_cgroup_parent applies",
                     rule="flag-cgroup-parent")
    for key, check in (("memory", check_memory), ("memswap", check_memory_swap)):
        if call.one(key) not in ("", "0"):
            check(call.one(key), caps, f"build {key}")
    if call.one("cpuquota") not in ("", "0") or call.one("cpuperiod") not in ("", "0"):
        check_build_quota(call, caps)
    if caps.default_memory and call.one("memory") in ("", "0"):
        check_memory(caps.default_memory, caps, "the policy's default_memory")
        from gatekeeper.vetting.limits import ram_in_bytes

        call.query["memory"] = [str(ram_in_bytes(caps.default_memory))]
    if caps.default_cpus and call.one("cpuquota") in ("", "0"):
        call.query["cpuperiod"] = [str(BUILD_CPU_PERIOD)]
        call.query["cpuquota"] = [str(round(caps.default_cpus * BUILD_CPU_PERIOD))]
    if caps.build_cgroup_parent:
        call.query["cgroupparent"] = [caps.build_cgroup_parent]


def check_build_quota(call: Call, caps: object) -> None:
    """cpuquota/cpuperiod: the CPUs they come to within the cap (the CLI layer injects
    the default as such a pair)."""
    from gatekeeper.vetting.limits import NANO, check_cpu_quota, plain_int

    cap = getattr(caps, "cpus", 0)
    if not cap:
        return
    quota, period = plain_int(call.one("cpuquota")), plain_int(call.one("cpuperiod") or "100000")
    if quota is None or period is None or quota <= 0 or period <= 0 or quota * NANO > cap * period:
        check_cpu_quota(call.one("cpuquota"), caps, "build cpuquota")  # type: ignore[arg-type]  # a Caps; quota set


# ---------------------------------------------------------------- [images] allowed sources


def vet_search(call: Call) -> ApiVerdict:
    """GET /images/search: the engine asks the term's registry, on the host's network."""
    from gatekeeper.vetting.images import check_host_registry

    check_host_registry(call.one("term"), call.policy, "search", call.engine.addresses)
    return call.allow()


def check_image_source(call: Call, reference: str, what: str) -> None:
    """[images] allowed (gatekeeper.vetting.images): the repository an image comes from. A
    reference by image ID is judged by the tags the image carries; one without any is refused."""
    from gatekeeper.vetting.images import allowed_patterns, check_reference

    patterns = allowed_patterns(call.policy)
    if not patterns:
        return
    found = objects.lookup(call.engine, IMAGE, reference) if is_image_id(reference) else None
    if found is None:
        check_reference(reference, patterns, what)
        return
    for tag in found.names:
        try:
            check_reference(tag, patterns, what)
        except Denied:
            continue
        return
    check_reference(found.names[0] if found.names else reference, patterns, what)


def is_image_id(reference: str) -> bool:
    """sha256:HEX, or a bare hex ID (prefix) of 12 or more characters."""
    bare = reference.removeprefix("sha256:")
    return len(bare) >= 12 and all(ch in "0123456789abcdef" for ch in bare)
