"""Engine objects as the ownership rails see them: one question to the engine
(through the World seam, `ctx.world.run_docker`) resolves names, IDs and ID
prefixes to `Target`s (ID, names, labels). No rule is decided here
(gatekeeper.label_rules decides; gatekeeper.vetting.ownership says which words
name which objects).

Names reach the engine as positional arguments after `--`, never as template
text: the query's --format is ours alone.
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.owner import (
    BUILT_BY,
    BUILT_IMAGE,
    CREATED_LABEL,
    OWNER_LABEL,
    PULLED_BY,
    PULLED_IMAGE,
    PULLED_TAG,
    PULLED_TAG_TIME,
    tag_time_pin,
)
from gatekeeper.printable import first_error

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.vetting.context import Context

QUERY_TIMEOUT = 30.0

CONTAINER, IMAGE, VOLUME, NETWORK = "container", "image", "volume", "network"

# What one object of each kind is asked for: ID, names (JSON), labels (JSON); for a
# container also its image's ID (its labels are inherited: gatekeeper.owner.proven_labels);
# for an image its digests and LastTagTime (a pull record's pin: gatekeeper.owner).
QUERY_FORMATS = {
    CONTAINER: "{{.Id}}\t{{json .Name}}\t{{with .Config}}{{json .Labels}}{{end}}\t{{.Image}}",
    IMAGE: ("{{.Id}}\t{{json .RepoTags}}\t{{with .Config}}{{json .Labels}}{{end}}\t{{json .RepoDigests}}"
            "\t{{json .Metadata.LastTagTime}}"),
    VOLUME: "{{.Name}}\t{{json .Name}}\t{{json .Labels}}",
    NETWORK: "{{.Id}}\t{{json .Name}}\t{{json .Labels}}",
}

# docker's stderr markers for an object that does not exist.
NOT_FOUND = ("no such", "not found")
NO_SOCKET = "no such file or directory"  # the engine's socket is missing: no answer at all


class Target:
    """One resolved object: its ID, the names it goes by, its labels (an image: its digests
    and its LastTagTime pin, gatekeeper.owner.tag_time_pin)."""

    __slots__ = ("word", "ident", "names", "labels", "digests", "tagged")

    def __init__(self, word: str, ident: str, names: list[str], labels: dict[str, str],
                 digests: list[str] | None = None) -> None:
        self.word = word  # as the agent wrote it
        self.ident = ident
        self.names = names
        self.labels = labels
        self.digests = digests or []  # an image's RepoDigests (gatekeeper.image_scope)
        self.tagged = ""  # an image's LastTagTime as a pin; "" none (gatekeeper.owner.PULLED_TAG_TIME)

    def shown(self) -> str:
        name = self.names[0] if self.names else self.ident[7:19]
        return repr(self.word) if self.word == name else f"{self.word!r} ({name})"


def resolve(ctx: Context, kind: str, words: list[str]) -> list[Target]:
    """One engine query for all targets; any target it cannot resolve is a denial."""
    from gatekeeper.json_codec import loads

    args = [kind, "inspect", "--format", QUERY_FORMATS[kind], "--", *words]
    out = query(ctx, args, f"{kind} {', '.join(map(repr, words))}")
    lines = out.splitlines()
    if len(lines) != len(words):
        raise Denied(f"cannot resolve {kind} {', '.join(map(repr, words))}", rule="scope-unresolved")
    targets, images = [], []
    for word, line in zip(words, lines, strict=True):
        ident, names, labels, image, tagged = [*line.split("\t", 4), "", "", "", ""][:5]
        try:
            names_value, labels_value = loads(names or "null"), loads(labels or "null")
        except ValueError:
            raise Denied(f"cannot resolve {kind} {word!r}", rule="scope-unresolved") from None
        found = labels_value if isinstance(labels_value, dict) else {}  # null: none (fails the owner check)
        targets.append(Target(word, ident, plain_names(names_value), dict(found)))
        if kind == IMAGE:
            targets[-1].digests = json_strings(image)
            targets[-1].tagged = tag_time_pin(tagged)
        images.append(image.strip())
    if kind == CONTAINER:
        prove_created(ctx, targets, images)
    elif kind == IMAGE:
        prove_built(ctx, targets)
    return targets


def prove_built(ctx: Context, targets: list[Target]) -> None:
    """An image's owner label counts only when a build record of this profile names its ID
    (gatekeeper.build_records): images inherit their base's labels. Asked only when one of
    them carries the profile's label; any other owner label names no image of this profile."""
    from gatekeeper.owner import proven_image_labels

    claimed = [target for target in targets if OWNER_LABEL in target.labels]
    ours = {t.ident for t in claimed if t.labels[OWNER_LABEL] == ctx.policy.profile}
    built = {ident for ident in sorted(ours) if is_built(ctx, ident)}
    for target in claimed:
        target.labels = proven_image_labels(target.labels, target.ident, built)


def is_built(ctx: Context, ident: str) -> bool:
    """A build record of this profile names image `ident` (gatekeeper.build_records)."""
    from gatekeeper.build_records import RECORD_PREFIX

    args = ["volume", "ls", "-q", "--filter", f"label={BUILT_BY}={ctx.policy.profile}",
            "--filter", f"label={BUILT_IMAGE}={ident}"]
    names = query(ctx, args, f"the builds of image {ident[:19]}").split()
    return any(name.startswith(RECORD_PREFIX) for name in names)


def built_images(ctx: Context) -> set[str]:
    """The image IDs this profile's build records name (gatekeeper.build_records)."""
    args = ["volume", "ls", "--filter", f"label={BUILT_BY}={ctx.policy.profile}",
            "--format", f'{{{{.Label "{BUILT_IMAGE}"}}}}|']
    out = query(ctx, args, "your build records")
    return {line[:-1] for line in out.splitlines() if line.startswith("sha256:") and line.endswith("|")}


def prove_created(ctx: Context, targets: list[Target], images: list[str]) -> None:
    """A container's owner label counts only when its create set it, not its image
    (gatekeeper.owner.proven_labels): one more question, the labels of the images the
    labelled containers run, by ID. An image the engine no longer has proves nothing.
    Only a container whose labels could prove it (owner and created agree) makes the
    image worth asking: for the others proven_labels strips them whatever the image says."""
    from gatekeeper.owner import proven_labels

    claimed = [(target, image) for target, image in zip(targets, images, strict=True)
               if OWNER_LABEL in target.labels or CREATED_LABEL in target.labels]
    wanted = sorted({image for target, image in claimed if image and could_prove(target.labels)})
    known = image_labels(ctx, wanted) if wanted else {}
    for target, image in claimed:
        target.labels = proven_labels(target.labels, known.get(image))


def could_prove(labels: dict[str, str]) -> bool:
    """Whether the image's labels decide what proven_labels makes of these (else nothing does)."""
    owner = labels.get(OWNER_LABEL)
    return owner is not None and labels.get(CREATED_LABEL) == owner


def image_labels(ctx: Context, idents: list[str]) -> dict[str, dict[str, str]]:
    """The labels of the images `idents` (full IDs) that exist, by ID."""
    args = [IMAGE, "inspect", "--format", QUERY_FORMATS[IMAGE], "--", *idents]
    try:
        status, out, err = ctx.world.run_docker(ctx.policy, args, None, QUERY_TIMEOUT)
    except Exception:  # noqa: BLE001 - a timeout or a missing binary: unresolved
        status, out, err = -1, b"", b"the engine did not answer"
    if status != 0 and not only_not_found(err):
        raise Denied(f"cannot resolve the containers' images: {first_error(err)}", rule="scope-unresolved")
    found = {}
    for line in out.decode("utf-8", "replace").splitlines():
        ident, _names, labels = [*line.split("\t", 3), "", ""][:3]
        found[ident] = json_labels(labels)
    return found


def lookup(ctx: Context, kind: str, word: str) -> Target | None:
    """The object `word` names now, resolved as the engine resolves it (name, ID
    or ID prefix), or None if there is none; an engine that does not answer is a denial."""
    args = [kind, "inspect", "--format", QUERY_FORMATS[kind], "--", word]
    try:
        status, _out, err = ctx.world.run_docker(ctx.policy, args, None, QUERY_TIMEOUT)
    except Exception:  # noqa: BLE001 - a timeout or a missing binary: unresolved
        status, err = -1, b"the engine did not answer"
    if status != 0:
        if only_not_found(err):
            return None
        raise Denied(f"cannot resolve {kind} {word!r}: {first_error(err)}", rule="scope-unresolved")
    return resolve(ctx, kind, [word])[0]


def pulled_tags(ctx: Context, ident: str, tagged: str) -> set[str]:
    """The tags gatekeeper recorded as pulled by this profile for image `ident` as it is now,
    its LastTagTime `tagged` (its pull records: volumes labelled PULLED_BY, PULLED_IMAGE,
    PULLED_TAG, PULLED_TAG_TIME). Without a pin no record names this image object: none."""
    if not tagged:
        return set()
    args = ["volume", "ls", "--filter", f"label={PULLED_BY}={ctx.policy.profile}",
            "--filter", f"label={PULLED_IMAGE}={ident}", "--filter", f"label={PULLED_TAG_TIME}={tagged}",
            "--format", f'{{{{.Label "{PULLED_TAG}"}}}}|']
    out = query(ctx, args, f"the pulls of image {ident[:19]}")
    return {line[:-1] for line in out.splitlines() if line.endswith("|")}


def plain_names(value: object) -> list[str]:
    """A container's '/name' or an image's ['repo:tag', ...] as plain names."""
    names = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return [str(name).lstrip("/") for name in names]


def query(ctx: Context, args: list[str], what: str) -> str:
    """docker's stdout for `args`; an engine that fails or does not answer is a denial."""
    try:
        status, out, err = ctx.world.run_docker(ctx.policy, args, None, QUERY_TIMEOUT)
    except Exception as error:
        from gatekeeper.bounded import timed_out  # only here: an answered query never loads it

        if not timed_out(error):
            raise
        raise Denied(f"cannot resolve {what}: the engine did not answer", rule="scope-unresolved") from None
    if status != 0:
        raise Denied(f"cannot resolve {what}: {first_error(err)}", rule="scope-unresolved")
    return out.decode("utf-8", "replace")


def only_not_found(err: bytes) -> bool:
    """docker's stderr says only that the named objects do not exist ("No such container",
    "not found"); anything else (the engine does not answer, permission denied) is no answer."""
    lines = [line.lower() for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    return bool(lines) and all(any(marker in line for marker in NOT_FOUND) and NO_SOCKET not in line
                               for line in lines)


def json_strings(text: str) -> list[str]:
    """An engine's `{{json .RepoDigests}}` answer as a list of strings (null or junk -> [])."""
    from gatekeeper.json_codec import loads

    try:
        value = loads(text.strip() or "null")
    except ValueError:
        return []
    return [str(item) for item in value] if isinstance(value, list) else []


def json_labels(text: str) -> dict[str, str]:
    """An engine's `{{json .Labels}}` answer as a dict (null -> {})."""
    from gatekeeper.json_codec import loads

    try:
        value = loads(text.strip() or "null")
    except ValueError:
        raise Denied(f"unexpected labels from the engine: {text[:120]!r}", rule="scope-unresolved") from None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
