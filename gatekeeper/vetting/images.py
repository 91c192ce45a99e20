"""Where images come from (policy [images]): an allowlist of registries and repositories.

An image is code the engine runs (and a build runs its RUN steps): an operator who
names the registries it may come from wants every route checked, not only `pull`:
`pull`, `run`/`create` (which pull what is missing), build `FROM`, `COPY --from=`,
`RUN --mount=from=`, the `# syntax=` frontend (an image the builder runs to parse
the Dockerfile), `--build-context name=docker-image://`, compose `image:` and the
Dockerfiles compose builds. An empty `allowed` list means no restriction.

References are normalised as docker's reference.ParseNormalizedNamed does
(`nginx` is docker.io/library/nginx, `index.docker.io` is docker.io), tag and
digest dropped, then matched against patterns component by component: `*` and
`?` never cross a '/', and a last component `**` matches one or more. So
`ghcr.io/acme/*` never matches `ghcr.io.evil.com/...` nor `ghcr.io/acme/a/b`.

A Dockerfile whose image names use build arguments (`FROM $BASE`), or that comes
on stdin, cannot be checked before the build: refused while an allowlist is set.

A Dockerfile on stdin (`build -f - DIR`, or `build -` with a Dockerfile or a context
archive) is read once through the World (bounded), checked for ADD <url> and LABEL
keys like any other, and docker is handed exactly those bytes (Vetted.client_stdin).

With or without an allowlist, a Dockerfile's `ADD <url>` / `ADD <git repository>` is
refused (rule build-add-url): the engine itself fetches those sources, on the host's
network, so a build could read services only the host's loopback reaches into the
agent's image. check_add_sources is shared with the API layer (gatekeeper.proxy.images).
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.image_refs import host_local_domain, matches, registry_name, repository, resolves_here

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    import re
    from collections.abc import Callable
    from typing import Any

    from gatekeeper.engine_objects import Target
    from gatekeeper.image_scope import ImageFacts
    from gatekeeper.policy import Policy
    from gatekeeper.vetting.context import Context

RULE = "image-source"
HOST_RULE = "image-host-registry"
ADD_RULE = "build-add-url"
ADD_INSTEAD = ("fetch it with curl or wget in a RUN step (which runs in the build container's network, "
               "not the host's) or COPY a file you fetched yourself")
RUN_FAMILY = frozenset({"container run", "container create"})
DOCKERFILE_LIMIT = 1 << 20


def pinning(policy: Policy) -> bool:
    return policy.pin_digests


def allowed_patterns(policy: Policy) -> list[str]:
    return list(policy.images_allowed)


def check_reference(reference: str, patterns: list[str], what: str) -> None:
    """Refuse `reference` (used as `what`) unless its repository matches a pattern."""
    if not patterns or reference == "scratch":
        return
    try:
        name = repository(reference)
    except ValueError as error:
        raise Denied(f"{what}: {error}", rule=RULE) from None
    if not any(matches(name, pattern) for pattern in patterns):
        raise Denied(f"{what} {reference!r} ({name}) is not from an allowed registry or repository; "
                     f"allowed: {', '.join(patterns)}", rule=RULE)


def check_host_registry(reference: str, policy: Policy, what: str,
                        addresses: Callable[[str], list[str]]) -> None:
    """Stops: `docker pull 127.0.0.1:PORT/x` (localhost, link-local, numbers), or a name that
    resolves to such an address (`127.0.0.1.nip.io`, an /etc/hosts entry): the engine pulls in
    the host's network namespace, so a service listening only on the host's loopback (or the
    metadata address) answers it and docker prints that answer to the agent, and the errors
    tell open ports from closed. Refused unless [images] host_registries names the registry.
    `addresses` resolves a registry name on this host (World.addresses): the engine resolves
    it again when it pulls, so a name whose answers change (DNS rebinding) is left to
    [images] allowed."""
    domain = host_local_domain(reference)
    if not domain:
        name = registry_name(reference)
        domain = resolves_here(reference, addresses(name)) if name else ""
    if not domain:
        return
    from fnmatch import fnmatchcase

    if not any(fnmatchcase(domain.lower(), pattern.lower()) for pattern in policy.images_host_registries):
        raise Denied(f"{what} {reference!r} names a registry on this host itself ({domain}): the engine "
                     "would fetch it over the host's own network; use an image from a remote registry, or "
                     f"ask the operator to list {domain!r} in [images] host_registries", rule=HOST_RULE)


# --- commands ------------------------------------------------------------------


def vet_image_sources(ctx: Context) -> None:
    """pull, run/create, build: every image the command would fetch or run."""
    patterns = allowed_patterns(ctx.policy)
    canonical = ctx.located.canonical
    if not ctx.parsed.positionals or asks_for_help(ctx):
        return
    if canonical in ("image pull", "search") or canonical in RUN_FAMILY:
        check_host_registry(ctx.parsed.positionals[0], ctx.policy, "image", ctx.world.addresses)
    if canonical == "image build":
        vet_build_images(ctx, patterns)  # ADD <url> is refused with or without an allowlist
    elif canonical in RUN_FAMILY and pinning(ctx.policy):
        check_reference(ctx.parsed.positionals[0], patterns, "image")
        pin_image(ctx)
    elif patterns and (canonical == "image pull" or canonical in RUN_FAMILY):
        check_reference(ctx.parsed.positionals[0], patterns, "image")


ID_FORMAT = "{{.Id}}"
PIN_TIMEOUT = 30.0


def pin_image(ctx: Context) -> None:
    """[images] pin_digests: the tag is resolved now, to the image the engine has under it, and
    the container is made from that image ID (sha256:...), which the audit record's argv shows:
    a tag re-pointed between this decision and the engine's lookup changes nothing."""
    reference = ctx.parsed.positionals[0]
    args = ["image", "inspect", "--format", ID_FORMAT, "--", reference]
    try:
        status, out, _ = ctx.world.run_docker(ctx.policy, args, None, PIN_TIMEOUT)
    except Exception:  # noqa: BLE001 - no answer: nothing to pin to
        status, out = 1, b""
    image_id = out.decode("ascii", errors="replace").strip()
    if status != 0 or not is_image_id(image_id):
        raise Denied(f"image {reference!r} could not be resolved to an image ID to run by ([images] "
                     "pin_digests); pull it first", rule=RULE)
    ctx.replace_word(ctx.parsed.positional_at[0], image_id)


def is_image_id(text: str) -> bool:
    digest = text.removeprefix("sha256:")
    return text.startswith("sha256:") and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def asks_for_help(ctx: Context) -> bool:
    from gatekeeper.grammar.pflag import bool_value

    return any(use.flag.long == "help" and bool_value(use) for use in ctx.parsed.uses)


def vet_build_images(ctx: Context, patterns: list[str]) -> None:
    from gatekeeper.grammar.pflag import bool_value
    context, dockerfile, platform = ctx.parsed.positionals[0], None, ""
    arguments: dict[str, str | None] = {}
    for use in ctx.parsed.uses:
        if use.flag.long == "file":
            dockerfile = use.value
        elif use.flag.long == "pull" and bool_value(use):
            raise refuse_pull(use.spelled)
        elif use.flag.long == "build-arg":
            key, eq, value = (use.value or "").partition("=")
            arguments[key] = value if eq else None  # KEY alone: the CLI's environment (ours), unknown here
        elif use.flag.long == "platform":
            platform = use.value or ""
        elif use.flag.long == "build-context":
            value = (use.value or "").partition("=")[2]
            if value.startswith("docker-image://"):
                check_reference(value[len("docker-image://"):], patterns, "--build-context image")
                check_image_word(ctx, value[len("docker-image://"):], f"{use.spelled} image")
        if use.flag.long == "build-arg" and patterns:
            check_syntax_argument(use.value or "", patterns)
    if (context == "-" or dockerfile == "-") and patterns:
        raise Denied("a Dockerfile on stdin cannot be checked against [images] allowed before the build; "
                     "write it into the build context", rule=RULE)
    if context == "-" or dockerfile == "-":
        vet_stdin_dockerfile(ctx, context == "-", dockerfile or "Dockerfile", arguments, platform)
        return
    root = ctx.host_path(context, "build context")
    path = root.rstrip("/") + "/Dockerfile" if dockerfile is None else dockerfile
    data = read_dockerfile_bytes(ctx, path)
    pin_dockerfile(ctx, data)
    text = data.decode("utf-8", errors="replace")
    check_dockerfile(text, patterns, path)
    check_dockerfile_labels(ctx, text, path)
    check_base_images(ctx, text, path, arguments, patterns, platform)


def check_base_images(ctx: Context, text: str, where: str, arguments: dict[str, str | None],
                      patterns: list[str], platform: str = "") -> None:
    """The images the build starts FROM (below): one engine question for all of them, each
    one the agent's to use (gatekeeper.image_scope) and its ONBUILD steps checked; one the
    engine does not have (for the platform asked for) is refused. Then the images the
    Dockerfile (and those steps) copy or mount from (COPY --from, RUN --mount=from)."""
    bases = base_images(text, arguments, where, platform)
    copied = copied_images(text, where)
    if bases:
        args = ["image", "inspect", "--format", TRIGGERS_FORMAT, "--", *(image for image, _ in bases)]
        try:
            status, out, _err = ctx.world.run_docker(ctx.policy, args, None, PIN_TIMEOUT)
        except Exception:  # noqa: BLE001 - no answer: nothing checked, refused below
            status, out = -1, b""
        lines = out.decode("utf-8", errors="replace").splitlines()
        if status != 0 or len(lines) != len(bases):
            raise refuse_missing(", ".join(image for image, _ in bases), where)
        for (image, wanted), line in zip(bases, lines, strict=True):
            found, triggers, facts = base_answer(line, image, where)
            prove_facts(ctx, facts)
            check_image_use(ctx, image, facts, f"{where}: FROM")
            if not same_platform(wanted, found):
                raise refuse_missing(f"{image} for {wanted}", where)
            check_triggers(image, triggers, patterns, where)
            if isinstance(triggers, list):
                steps_text = "\n".join(str(step) for step in triggers)
                copied += copied_images(steps_text, f"{where}: FROM {image!r} ONBUILD")
    for image in dict.fromkeys(copied):
        check_image_word(ctx, image, f"{where}: COPY --from / RUN --mount from")


def prove_facts(ctx: Context, facts: ImageFacts) -> None:
    """The owner label of an image read outside engine_objects.resolve, proven as resolve
    proves it (gatekeeper.build_records): it counts only when a build record names the ID."""
    from gatekeeper.engine_objects import Target, prove_built

    target = Target(facts.ident, facts.ident, facts.tags, facts.labels)
    prove_built(ctx, [target])
    facts.labels = target.labels


def base_answer(line: str, image: str, where: str) -> tuple[str, object, ImageFacts]:
    """One TRIGGERS_FORMAT line: the image's os/arch, its ONBUILD steps (parsed JSON) and what
    gatekeeper.image_scope decides on; a line that does not parse is a base nobody checked."""
    from gatekeeper.engine_objects import json_labels, json_strings
    from gatekeeper.image_scope import ImageFacts
    from gatekeeper.json_codec import loads
    from gatekeeper.owner import tag_time_pin

    found, steps, ident, tags, digests, labels, tagged = [*line.split("\t", 6), "", "", "", "", ""][:7]
    try:
        triggers, names = loads(steps), loads(tags or "null")
    except ValueError:
        raise refuse_missing(image, where) from None
    named = [str(name) for name in names] if isinstance(names, list) else []
    return found, triggers, ImageFacts(ident, named, json_strings(digests), json_labels(labels),
                                       tag_time_pin(tagged))


STDIN_CONTEXT_LIMIT = 16 << 20  # a build context on stdin (`docker build - < ctx.tar`), read into memory
ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz: docker's context archives
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def vet_stdin_dockerfile(ctx: Context, context_on_stdin: bool, name: str,
                         arguments: dict[str, str | None], platform: str = "") -> None:
    """`build -f - DIR` (the Dockerfile on stdin) or `build -` (a Dockerfile, or a context
    archive holding it, on stdin): read once, checked like a Dockerfile in a directory, and
    docker gets exactly the bytes that were checked (Vetted.client_stdin)."""
    limit = STDIN_CONTEXT_LIMIT if context_on_stdin else DOCKERFILE_LIMIT
    data = ctx.world.read_stdin(limit)
    if data is None:
        return  # no client here (`gatekeeper check`); the ForceCommand always reads it
    if len(data) > limit:
        # Stops: a Dockerfile nobody could read before the build (ADD <url>, reserved LABELs).
        raise Denied(f"what 'docker build' reads on stdin is larger than {limit} bytes, too large to "
                     "check before the build; write it into a build context under your work directory",
                     rule=ADD_RULE)
    where = "the Dockerfile on stdin"
    if context_on_stdin and is_archive(data):
        data_text = dockerfile_in_archive(data, name)
        where = f"{name} in the build context on stdin"
    else:
        data_text = data.decode("utf-8", errors="replace")
    check_add_sources(data_text, where)
    check_dockerfile_labels(ctx, data_text, where)
    check_base_images(ctx, data_text, where, arguments, [], platform)
    ctx.vetted.client_stdin = data


def is_archive(data: bytes) -> bool:
    """As docker's CLI tells (DetectArchiveReader): compressed, or a first block that is a tar header."""
    if data.startswith((*ARCHIVE_MAGIC, ZSTD_MAGIC)) or data[257:262] == b"ustar":
        return True
    if len(data) < 512:
        return False
    import tarfile

    from gatekeeper.build_context import go_reads_header

    if go_reads_header(data[:512]):
        return True  # docker's reading; one only Python reads is refused as an archive too
    try:
        tarfile.TarInfo.frombuf(data[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def dockerfile_in_archive(data: bytes, name: str) -> str:
    """The Dockerfile `name` inside a context archive, as the engine unpacks it
    (gatekeeper.build_context: the last member written there wins, also one written through
    a symlink, and `dockerfile` when there is no `Dockerfile`)."""
    import io

    from gatekeeper.build_context import dockerfile_text

    if data.startswith(ZSTD_MAGIC):
        raise Denied("a zstd-compressed build context on stdin cannot be read before the build; "
                     "send it as tar or tar.gz", rule=ADD_RULE)
    return dockerfile_text(io.BytesIO(data), name)


def check_syntax_argument(argument: str, patterns: list[str]) -> None:
    """BUILDKIT_SYNTAX=IMAGE replaces the Dockerfile's frontend: an image the builder runs."""
    key, eq, value = argument.partition("=")
    if key == "BUILDKIT_SYNTAX":
        if not eq:
            raise Denied("--build-arg BUILDKIT_SYNTAX takes its value from the client's environment; "
                         "name the frontend image", rule=RULE)
        check_reference(value, patterns, "--build-arg BUILDKIT_SYNTAX frontend")


def pin_dockerfile(ctx: Context, data: bytes) -> None:
    """docker builds the bytes that were checked: `--file=-` and those bytes on its stdin (the CLI
    adds them to the directory's context as the Dockerfile), never the file read again.
    Stops: a container of the agent's, bound above the context, swapping the Dockerfile between
    this check and the CLI's own read (an ADD <loopback URL> built behind a harmless file)."""
    uses = [use for use in ctx.parsed.uses if use.flag.long == "file"]
    if uses:
        for use in uses:
            ctx.replace_value(use, "-")
    else:
        ctx.insert_after_command(["--file=-"])
    ctx.vetted.client_stdin = data  # empty when there is none: docker refuses an empty Dockerfile


def read_dockerfile(ctx: Context, path: str) -> str:
    """read_dockerfile_bytes, as text (what the checks read)."""
    return read_dockerfile_bytes(ctx, path).decode("utf-8", errors="replace")


def read_dockerfile_bytes(ctx: Context, path: str) -> bytes:
    """Resolved under the roots, read without following a symlink (as pinned files are). A
    missing `Dockerfile` is `dockerfile` where there is one: docker's CLI and the engine build
    that one instead."""
    data = read_existing_dockerfile(ctx, path)
    head, slash, base = path.rpartition("/")
    if data is None and base == "Dockerfile":
        # Stops: a `dockerfile` with ADD <url> built in place of the Dockerfile that was checked (none).
        data = read_existing_dockerfile(ctx, head + slash + "dockerfile")
    return data or b""  # none at all: the builder reports the missing file; nothing is fetched


def read_existing_dockerfile(ctx: Context, path: str) -> bytes | None:
    resolved = ctx.host_path(path, "Dockerfile")
    try:
        data = ctx.world.read_pinned(resolved, DOCKERFILE_LIMIT)
    except FileNotFoundError:
        return None
    except Denied as error:
        if str(error).endswith("does not exist"):  # (gatekeeper.pinning: no such file)
            return None
        raise
    if len(data) > DOCKERFILE_LIMIT:
        raise Denied(f"Dockerfile {path!r} is larger than {DOCKERFILE_LIMIT} bytes", rule=RULE)
    return data


def vet_model_images(ctx: Context, model: dict[str, Any]) -> None:
    """compose: each service's `image:` and the Dockerfile of each service it builds."""
    patterns = allowed_patterns(ctx.policy)
    building = ctx.located.canonical in COMPOSE_BUILDING
    if building:
        from gatekeeper.grammar.pflag import bool_value

        for use in ctx.parsed.uses:
            if use.flag.long == "pull" and ctx.located.canonical == "compose build" and bool_value(use):
                raise refuse_pull(use.spelled)
    for name, service in (model.get("services") or {}).items():
        build = (service or {}).get("build")
        if isinstance(build, dict):
            asked = [(service or {}).get("platform"), *(build.get("platforms") or [])]
            platforms = {str(platform) for platform in asked if platform}
            vet_model_build(ctx, build, patterns, name, building,  # ADD <url>: with or without an allowlist
                            sorted(platforms) or [""])
        if patterns and (service or {}).get("image"):  # built services too: `compose pull` fetches it
            check_reference(str(service["image"]), patterns, f"service {name!r}: image")
        if (service or {}).get("image"):
            check_host_registry(str(service["image"]), ctx.policy, f"service {name!r}: image",
                                ctx.world.addresses)
        for volume in (service or {}).get("volumes") or []:
            if isinstance(volume, dict) and volume.get("type") == "image":
                # Stops: an image the allowlist keeps the agent from running, read through a mount.
                check_reference(str(volume.get("source") or ""), patterns, f"service {name!r}: image mount")
                check_image_word(ctx, str(volume.get("source") or ""), f"service {name!r}: image mount")


# compose commands that may build a service's image (its base images' ONBUILD steps are checked).
COMPOSE_BUILDING = frozenset({"compose build", "compose up", "compose create", "compose run"})


def vet_model_build(ctx: Context, build: dict[str, Any], patterns: list[str], name: str,
                    building: bool = True, platforms: list[str] | None = None) -> None:
    """A service that builds: its image: is the tag it builds, the Dockerfile's images are fetched."""
    arguments = build.get("args") or {}
    if isinstance(arguments, dict) and "BUILDKIT_SYNTAX" in arguments:
        check_syntax_argument(f"BUILDKIT_SYNTAX={arguments['BUILDKIT_SYNTAX']}", patterns)
    if building and build.get("pull") is True:
        raise refuse_pull(f"service {name!r}: build.pull")
    values = {str(k): None if v is None else str(v) for k, v in arguments.items()} \
        if isinstance(arguments, dict) else {}
    if building:
        snapshot_model_contexts(ctx, build, name)
    contexts = build.get("additional_contexts")
    for source in (contexts.values() if isinstance(contexts, dict) else []):
        if str(source).startswith("docker-image://"):
            reference = str(source)[len("docker-image://"):]
            check_reference(reference, patterns, f"service {name!r}: additional_contexts image")
            if building:  # Stops: the operator's local image read into the build as a context.
                check_image_word(ctx, reference, f"service {name!r}: additional_contexts image")
    if build.get("dockerfile_inline") is not None:
        where = f"service {name!r}: dockerfile_inline"
        check_dockerfile(str(build["dockerfile_inline"]), patterns, where)
        check_dockerfile_labels(ctx, str(build["dockerfile_inline"]), where)
        if building:
            for platform in platforms or [""]:
                check_base_images(ctx, str(build["dockerfile_inline"]), where, values, patterns, platform)
        return
    context = str(build.get("context") or ".")
    dockerfile = str(build.get("dockerfile") or "Dockerfile")
    path = dockerfile if dockerfile.startswith("/") else context.rstrip("/") + "/" + dockerfile
    data = read_dockerfile_bytes(ctx, path)
    if building:
        pin_model_dockerfile(ctx, build, path, data)
    text = data.decode("utf-8", errors="replace")
    check_dockerfile(text, patterns, path)
    check_dockerfile_labels(ctx, text, path)
    if building:
        for platform in platforms or [""]:
            check_base_images(ctx, text, path, values, patterns, platform)


def snapshot_model_contexts(ctx: Context, build: dict[str, Any], name: str) -> None:
    """compose reads the build's context and directory additional_contexts as snapshots of the
    checked directories (gatekeeper.context_snapshot), taken after the decision.
    Stops: a directory swapped for a symlink to one outside the roots (a container bound above
    it) between the check and compose's own walk, sending the outside directory to the build."""
    keys = ("services", str(name), "build")
    if isinstance(build.get("context"), str):
        ctx.vetted.model_snapshots.append(((*keys, "context"), build["context"]))
    contexts = build.get("additional_contexts")
    for key, source in (contexts.items() if isinstance(contexts, dict) else []):
        if isinstance(source, str) and source.startswith("/"):  # resolved: not docker-image://, service:
            ctx.vetted.model_snapshots.append(((*keys, "additional_contexts", str(key)), source))


def pin_model_dockerfile(ctx: Context, build: dict[str, Any], path: str, data: bytes) -> None:
    """compose builds the bytes that were checked: the model's build.dockerfile names a copy
    in gatekeeper's state directory (a top-level dot entry of the root: no container reaches
    it), written by the ForceCommand before compose runs (gatekeeper.pinning.write_pinned_files).
    compose's classic builder reads a Dockerfile outside the context itself and adds it to the
    context under a random name, as `docker build -f -` does.
    Stops: a container of the agent's, bound above the context, swapping the Dockerfile between
    this check and compose's own read (an ADD <loopback URL> built behind a harmless file)."""
    from gatekeeper.pinning import pinned_copy_path

    copy = pinned_copy_path(ctx.policy.state_dir, data)
    ctx.vetted.copies[copy] = (path, data)
    build["dockerfile"] = copy


def service_dockerfile(ctx: Context, name: str,
                       build: dict[str, Any]) -> tuple[str, str, dict[str, str | None]]:
    """A compose service's Dockerfile as compose hands it to the builder: (its text, where it
    is for messages, the build arguments)."""
    if build.get("dockerfile_inline") is not None:
        text, where = str(build["dockerfile_inline"]), f"service {name!r}: dockerfile_inline"
    elif str(build.get("dockerfile")) in ctx.vetted.copies:  # pinned: the bytes checked
        where, data = ctx.vetted.copies[str(build["dockerfile"])]
        text = data.decode("utf-8", errors="replace")
    else:
        context = str(build.get("context") or ".")
        dockerfile = str(build.get("dockerfile") or "Dockerfile")
        where = dockerfile if dockerfile.startswith("/") else context.rstrip("/") + "/" + dockerfile
        text = read_dockerfile(ctx, where)
    arguments = build.get("args")
    values = {str(k): None if v is None else str(v) for k, v in arguments.items()} \
        if isinstance(arguments, dict) else {}
    return text, where, values


# --- Dockerfiles ---------------------------------------------------------------


def check_dockerfile(text: str, patterns: list[str], where: str) -> None:
    """Every source the engine fetches (ADD <url>), every image the Dockerfile makes the builder
    fetch or run (while [images] allowed lists patterns)."""
    check_add_sources(text, where)
    if not patterns:
        return
    escape, syntax = parser_directives(text)
    if syntax is not None:
        check_reference(syntax, patterns, f"{where}: # syntax= frontend")
    stages: set[str] = set()
    for instruction, words in instructions(text, escape):
        for reference in images_of(instruction, words, stages):
            if "$" in reference:
                raise Denied(f"{where}: {instruction} {reference!r} uses a build argument, so the image "
                             "cannot be checked before the build; name the image", rule=RULE)
            check_reference(reference, patterns, f"{where}: {instruction}")


def check_add_sources(text: str, where: str) -> None:
    """Refuse ADD whose source is a URL or a git repository, or could become one (a build
    argument or variable in a source): the engine fetches those on the host's network."""
    escape, _ = parser_directives(text)
    for keyword, arguments in instructions(text, escape):
        instruction, words = keyword, arguments
        if instruction == "ONBUILD" and words:
            instruction, words = words[0].upper(), words[1:]
        if instruction != "ADD":
            continue
        sources = list(words)
        while sources and sources[0].startswith("--"):
            sources.pop(0)  # --checksum=, --chown=, --keep-git-dir=, --link
        for index, word in enumerate(sources):
            plain = word.replace(escape, "").replace('"', "").replace("'", "").lower()
            if "://" in plain or "git@" in plain or plain.startswith(("github.com/", "[github.com/")):
                # Stops: the engine GETting a loopback-only service (metadata, admin APIs) into the image.
                raise Denied(f"{where}: ADD {word[:80]!r} is fetched by the engine on the host's network; "
                             + ADD_INSTEAD, rule=ADD_RULE)
            if "$" in word and index < len(sources) - 1:
                raise Denied(f"{where}: ADD source {word[:80]!r} uses a variable, so it cannot be told from "
                             "a URL before the build; name the file, or " + ADD_INSTEAD, rule=ADD_RULE)


def check_dockerfile_labels(ctx: Context, text: str, where: str) -> None:
    """LABEL keys follow the rules of --label (gatekeeper.label_rules.check_label): the image
    carries them and every container made from it inherits them."""
    from gatekeeper.label_rules import check_label

    for key in label_keys(text):
        if "$" in key:
            # Stops: LABEL ${K}=x with ARG K=gatekeeper.owner (or a [labels] refused key).
            raise Denied(f"{where}: LABEL key {key[:80]!r} uses a variable, so it cannot be checked before "
                         "the build; write the key out", rule="refused-label")
        check_label(ctx, key + "=", f"{where}: LABEL")


def label_keys(text: str) -> list[str]:
    """The keys of every LABEL (and ONBUILD LABEL): `key=value ...` words, or the legacy
    `LABEL key value`; quotes and escape characters dropped (as docker reads the key)."""
    escape, _ = parser_directives(text)
    keys = []
    for keyword, arguments in instructions(text, escape):
        instruction, words = keyword, arguments
        if instruction == "ONBUILD" and words:
            instruction, words = words[0].upper(), words[1:]
        if instruction != "LABEL" or not words:
            continue
        named = [word for word in words if "=" in word] if "=" in words[0] else words[:1]
        for word in named:
            keys.append(word.partition("=")[0].replace(escape, "").replace('"', "").replace("'", ""))
    return keys


# Docker's Dockerfile parser (moby/buildkit frontend/dockerfile/parser), which both builders use,
# reads lines otherwise than str.splitlines/strip/split: a leading UTF-8 BOM is dropped, lines end
# at "\n" only (trailing "\r"s dropped), "\r", "\v" and "\f" inside a line separate words, a line
# continues only when the escape character is followed by spaces or tabs alone, and comments and
# blank lines are what Go's unicode.IsSpace leaves empty. Read any other way, `ADD\vhttp://...`,
# `RUN true \<NBSP>` before an ADD line, or a BOM before `# escape=` hide an instruction.
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
           "\u2028\u2029\u202f\u205f\u3000"  # Go's unicode.IsSpace
DOCKERFILE_WHITESPACE = "\t\v\f\r "  # the parser's word separators ([\t\v\f\r ]+)


def dockerfile_lines(text: str) -> list[str]:
    """The lines as docker's parser scans them."""
    return [line.rstrip("\r\n") for line in text.removeprefix("\ufeff").split("\n")]


def parser_directives(text: str) -> tuple[str, str | None]:
    """The escape character and the syntax frontend from the leading `# key=value` lines."""
    import re

    directive = re.compile(r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*")
    escape, syntax = "\\", None
    for line in dockerfile_lines(text):
        match = directive.fullmatch(line.lstrip(GO_SPACE))
        if match is None:
            break
        key, value = match.group(1).lower(), match.group(2)
        if key == "escape":
            escape = value
        elif key == "syntax":
            syntax = value
        elif key != "check":
            break
    return escape, syntax


def dockerfile_words(line: str) -> list[str]:
    import re

    return [word for word in re.split(f"[{DOCKERFILE_WHITESPACE}]+", line.strip(GO_SPACE)) if word]


def instructions(text: str, escape: str) -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, words) per logical line, as docker's parser joins them: continuations
    joined, comments and blank lines inside a continuation dropped. With a heredoc (`<<`,
    BuildKit) a line after a continued one is read as an instruction too: a heredoc's
    terminator may end in the escape character (`RUN <<'A\\'` ... `A\\`), which BuildKit
    does not take as a continuation, so the next line is an instruction of its own."""
    import re

    continued = re.compile(re.escape(escape) + "[ \t]*$")
    lines = dockerfile_lines(text)
    out: list[tuple[str, list[str]]] = []
    index = 0
    while index < len(lines):
        words, index = logical_line(lines, index, continued)
        if words:
            out.append((words[0].upper(), words[1:]))
    if "<<" in text:
        for after in range(1, len(lines)):
            if continued.search(lines[after - 1]) and lines[after].lstrip(GO_SPACE)[:1] not in ("", "#"):
                words, _ = logical_line(lines, after, continued)
                if words:
                    out.append((words[0].upper(), words[1:]))
    return out


def logical_line(lines: list[str], index: int, continued: re.Pattern[str]) -> tuple[list[str], int]:
    """The words of the logical line starting at lines[index], and the index after it."""
    first = lines[index].lstrip(GO_SPACE)
    index += 1
    logical = "" if first.startswith("#") else first
    ended = continued.search(logical) is None
    logical = continued.sub("", logical)
    while not ended and index < len(lines):
        line = lines[index]
        index += 1
        if not line.lstrip(GO_SPACE) or line.lstrip(GO_SPACE).startswith("#"):
            continue  # docker drops comments and blank lines inside a continuation
        ended = continued.search(line) is None
        logical += continued.sub("", line)
    return dockerfile_words(logical), index


def images_of(instruction: str, words: list[str], stages: set[str]) -> list[str]:
    """Image references one instruction fetches (stage names and numbers are not images)."""
    if instruction == "ONBUILD" and words:
        return images_of(words[0].upper(), words[1:], stages)
    if instruction == "FROM":
        plain = [w for w in words if not w.startswith("--")]
        if len(plain) >= 3 and plain[1].lower() == "as":
            stages.add(plain[2].lower())
        image = plain[0] if plain else ""
        return [] if image.lower() in stages else [image]
    if instruction == "COPY":
        return [v for v in flag_values(words, "--from") if not from_stage(v, stages)]
    if instruction == "RUN":
        mounts = flag_values(words, "--mount")
        sources = [field[5:] for m in mounts for field in m.split(",") if field.startswith("from=")]
        return [s for s in sources if not from_stage(s, stages)]
    return []


def flag_values(words: list[str], flag: str) -> list[str]:
    values = []
    for word in words:
        if not word.startswith("--"):
            break
        if word.startswith(flag + "="):
            values.append(word[len(flag) + 1:])
    return values


def from_stage(value: str, stages: set[str]) -> bool:
    return value.isdigit() or value.lower() in stages


# --- the ONBUILD steps of base images -------------------------------------------
# The ONBUILD triggers of the images a build starts FROM (both layers).
#
# An image carries ONBUILD steps in its config (`Config.OnBuild`), and the builder runs them
# as the first steps of every build `FROM` that image. So an image pulled from any registry
# can bring `ADD http://127.0.0.1:.../` (the engine fetches it on the host's network) or
# `COPY --from=<an image [images] allowed refuses>` into a build whose own Dockerfile shows
# neither. Before a build, the images its stages start FROM are looked up on the engine and
# their triggers checked as Dockerfile lines (check_add_sources,
# check_dockerfile). A base image the engine does not have yet would be pulled by the builder
# unchecked: refused ("docker pull it first"), and so is a build that pulls its base images
# anew (`build --pull`, compose `build.pull`, the API's `pull=`).
#
# Pure functions of the Dockerfile's text and the build arguments; the engine is asked by
# check_base_images (the CLI layer, through its World) and gatekeeper.proxy.images.

# One line per image: its os/arch, a tab, its ONBUILD steps (a JSON list of lines, or null).
# Then the image's ID, tags, digests and labels (gatekeeper.image_scope), one line per image.
TRIGGERS_FORMAT = ("{{.Os}}/{{.Architecture}}\t{{json .Config.OnBuild}}\t{{.Id}}\t{{json .RepoTags}}"
                   "\t{{json .RepoDigests}}\t{{json .Config.Labels}}\t{{json .Metadata.LastTagTime}}")
PULL_FIRST = "docker pull it first (without --pull the builder uses the image checked here)"


def global_args(words: list[str], arguments: dict[str, str | None], values: dict[str, str | None]) -> None:
    """An ARG before the first FROM: its value is the build's argument if given, else its
    default (quotes dropped), else None (declared without a value)."""
    for word in words:
        key, eq, default = word.partition("=")
        values[key] = arguments[key] if key in arguments else (default.strip("\"'") if eq else None)


def base_images(text: str, arguments: dict[str, str | None], where: str,
                platform: str = "") -> list[tuple[str, str]]:
    """(image, platform asked for or "") for each stage's FROM, as the builder reads them: the
    global ARGs (before the first FROM) expanded, their defaults replaced by the build's
    arguments; `FROM --platform=` over the build's own platform; earlier stages and `scratch`
    are not images. A FROM that cannot be expanded is refused."""
    escape, _ = parser_directives(text)
    values: dict[str, str | None] = {}
    stages: set[str] = set()
    images: list[tuple[str, str]] = []
    for instruction, words in instructions(text, escape):
        if instruction == "ARG" and not stages and not images:
            global_args(words, arguments, values)
        elif instruction == "FROM":
            plain = [w for w in words if not w.startswith("--")]
            image = expand(plain[0] if plain else "", values, where)
            wanted = platform
            for flag in (w for w in words if w.startswith("--")):
                name, _eq, value = flag.partition("=")
                if name.lower() == "--platform":
                    wanted = expand(value, values, where)
            if image.lower() not in stages and image != "scratch":
                images.append((image, wanted))
            if len(plain) >= 3 and plain[1].lower() == "as":
                stages.add(plain[2].lower())
    return images


def same_platform(wanted: str, found: str) -> bool:
    """The platform a FROM asks for (os/arch[/variant], or an arch alone) is the image's os/arch:
    otherwise the classic builder pulls that platform's image, past the check of its steps."""
    if not wanted:
        return True
    parts = wanted.lower().split("/")
    os_arch = "/".join(parts[:2]) if len(parts) > 1 else "linux/" + parts[0]
    return os_arch == found.lower()


def expand(word: str, values: dict[str, str | None], where: str) -> str:
    """`$NAME` and `${NAME}` replaced by the global ARG's value; anything else with a `$` refused."""
    import re

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        found = values.get(name)
        if found is None:
            raise Denied(f"{where}: FROM {word[:80]!r} uses {name!r}, which has no value here; name the "
                         "image (its ONBUILD steps are checked before the build)", rule=ADD_RULE)
        return found

    expanded = re.sub(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))", value, word)
    if "$" in expanded:
        raise Denied(f"{where}: FROM {word[:80]!r} cannot be read before the build; name the image "
                     "(its ONBUILD steps are checked before the build)", rule=ADD_RULE)
    return expanded


def check_triggers(image: str, triggers: object, patterns: list[str], where: str) -> None:
    """One base image's ONBUILD steps, checked as the Dockerfile's own lines are."""
    if triggers is None:
        return
    if not isinstance(triggers, list) or not all(isinstance(line, str) for line in triggers):
        raise Denied(f"{where}: the ONBUILD steps of {image!r} cannot be read", rule=ADD_RULE)
    text = "\n".join(line.replace("\n", " ") for line in triggers)
    what = f"{where}: FROM {image!r} ONBUILD"
    # Stops: ONBUILD ADD http://127.0.0.1:.../ in a pulled image, run by the builder in the
    # agent's build on the host's network (the Dockerfile itself shows no ADD).
    check_add_sources(text, what)
    check_dockerfile(text, patterns, what)


def copied_images(text: str, where: str) -> list[str]:
    """The images a Dockerfile's COPY --from and RUN --mount=from read files from (stages and
    stage numbers are no images). One named by a variable cannot be checked: refused."""
    escape, _ = parser_directives(text)
    stages: set[str] = set()
    found: list[str] = []
    for instruction, words in instructions(text, escape):
        named = images_of(instruction, words, stages)
        if instruction in ("FROM", "ONBUILD"):
            continue  # FROM: base_images; ONBUILD: checked where the image is a base
        for reference in named:
            if "$" in reference:
                # Stops: COPY --from=$IMAGE reading the operator's image that no check saw named.
                raise Denied(f"{where}: {instruction} from {reference[:80]!r} uses a build argument, so "
                             "the image cannot be checked before the build; name the image",
                             rule="image-not-shared")
            found.append(reference)
    return found


# --- [images] shared: the images the agent may use (gatekeeper.image_scope) -------------


def check_image_use(ctx: Context, word: str, facts: ImageFacts, what: str) -> None:
    """The image `word` named (resolved into `facts`) is the agent's to run, build from or
    mount; only when nothing else admits it are its pull records asked for."""
    from gatekeeper.image_scope import may_use, refusal

    if may_use(ctx.policy, facts):
        return
    from gatekeeper.engine_objects import pulled_tags

    if facts.ident and may_use(ctx.policy, facts, pulled=bool(pulled_tags(ctx, facts.ident, facts.tagged))):
        return
    raise refusal(word, facts, what)


def check_image_word(ctx: Context, word: str, what: str) -> None:
    """check_image_use for an image named by the agent; one the engine does not have is no
    local image of anyone's (the engine or builder pulls it, under [images] allowed)."""
    from gatekeeper.engine_objects import IMAGE, lookup

    if not word or word == "scratch":
        return
    target = lookup(ctx, IMAGE, word)
    if target is not None:
        check_image_use(ctx, word, target_facts(target), what)


def target_facts(target: Target) -> ImageFacts:
    from gatekeeper.image_scope import ImageFacts

    return ImageFacts(target.ident, target.names, target.digests, target.labels, target.tagged)


def refuse_missing(image: str, where: str) -> Denied:
    return Denied(f"{where}: FROM {image!r} is not on the engine, so its ONBUILD steps cannot be checked "
                  f"before the builder pulls and runs them; {PULL_FIRST}", rule=ADD_RULE)


def refuse_pull(what: str) -> Denied:
    # Stops: the builder pulling a newer base image (with ONBUILD steps) than the one checked here.
    return Denied(f"{what}: the builder would pull the base images anew, past the check of their ONBUILD "
                  "steps; docker pull them first, then build without it", rule=ADD_RULE)
