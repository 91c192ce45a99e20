"""Engine steps around an allowed command: what the pure decision asked for
(Decision.prepare / Decision.afterwards) and execution does, with the same
pinned binary and clean environment as the command itself.

* ("volume-create", NAME), before a run/create that mounts a volume that did not
  exist at decision time: `docker volume create --label gatekeeper.owner=P NAME`,
  then the volume is read back and must be plain and the agent's (if someone
  made one of that name in between, create is a no-op and keeps their labels:
  then nothing runs).
* ("pull-record", REF, "new"|"owned"), around a pull: before it, the tags that
  exist; after it succeeded, REF's tag ("" for a pull by digest) on the image it
  names now is recorded as pulled by the profile. A record is a volume
  `gatekeeper-pull-<hash>` with labels gatekeeper.pulled-by / pulled-image /
  pulled-tag / pulled-tag-time: labels under gatekeeper. are refused to the agent
  in every spelling, so only gatekeeper can make one. A tag that existed before and
  was not the agent's ("new" at decision time, present now: a race) is not recorded.
  The record pins the image object (gatekeeper.owner.PULLED_TAG_TIME): gatekeeper
  re-applies the tag (pin_pull) and records the LastTagTime that gave the image.
* ("pull-forget", IMAGE_ID), after an rmi of an image the agent pulled: once the
  image is gone, its records go too.
* ("build-record", TAG, ...), after a build (docker build -t, compose build): the image each
  TAG names now is recorded as built by the profile (gatekeeper.build_records), if it
  carries the profile's owner label and was created after the command started.
* ("build-forget", IMAGE_ID), after an rmi of an image the agent built: once it is gone,
  its build records go too.
* ("records-sweep",), after an image prune: the profile's pull and build records that can never
  count again (their image gone; a pull record pinning another LastTagTime, or none) go.
"""

from __future__ import annotations

from gatekeeper.owner import (
    BUILT_BY,
    BUILT_IMAGE,
    OWNER_LABEL,
    PULLED_BY,
    PULLED_IMAGE,
    PULLED_TAG,
    PULLED_TAG_TIME,
)

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.policy import Policy

RECORD_PREFIX = "gatekeeper-pull-"
PIN_TAG_PREFIX = "gatekeeper-pin-"  # a pull by digest's tag for an instant (pin_pull): no tag to re-apply
TIMEOUT = 60.0


class StepFailed(Exception):
    """A prepared step that did not leave the engine as the decision needs it."""


def docker(policy: Policy, args: list[str]) -> tuple[int, str, str]:
    from gatekeeper.worlds import RealWorld

    status, out, err = RealWorld().run_docker(policy, args, None, TIMEOUT)
    return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def run_prepared(policy: Policy, steps: list[tuple[str, ...]]) -> dict[str, dict[str, str]]:
    """Take the steps before the command; returns what the afterwards steps need.
    Raises StepFailed: the command must not run."""
    state: dict[str, dict[str, str]] = {}
    for step in steps:
        if step[0] == "volume-create":
            create_owned_volume(policy, step[1])
        else:
            raise StepFailed(f"unknown prepared step {step[0]!r}")
    return state


def snapshot_before(policy: Policy, afterwards: list[tuple[str, ...]]) -> dict[str, str]:
    """tag -> image ID, before a pull (only when one is to be recorded)."""
    if not any(step[0] == "pull-record" for step in afterwards):
        return {}
    listing = ["image", "ls", "--no-trunc", "--format", "{{.ID}}\t{{.Repository}}:{{.Tag}}"]
    status, out, _ = docker(policy, listing)
    if status != 0:
        raise StepFailed("cannot list the images before the pull")
    return {tag: ident for ident, _, tag in (line.partition("\t") for line in out.splitlines()) if tag}


def run_afterwards(policy: Policy, steps: list[tuple[str, ...]], before: dict[str, str],
                   started: float = 0.0) -> list[str]:
    """After the command (begun at `started`, epoch seconds) succeeded; returns warnings (the
    command already ran)."""
    warnings = []
    for step in steps:
        try:
            if step[0] == "pull-record":
                record_pull(policy, step[1], step[2], before)
            elif step[0] == "pull-forget":
                forget_pull(policy, step[1])
            elif step[0] == "build-record":
                record_builds(policy, list(step[1:]), started)
            elif step[0] == "build-forget":
                forget_build(policy, step[1])
            elif step[0] == "records-sweep":
                sweep_records(policy)
        except StepFailed as error:
            warnings.append(str(error))
    return warnings


def create_owned_volume(policy: Policy, name: str) -> None:
    from gatekeeper.engine_objects import json_labels
    from gatekeeper.vetting.volumes import PLAIN_OPTIONS, VOLUME_FORMAT

    owner = policy.profile
    status, _, err = docker(policy, ["volume", "create", "--label", f"{OWNER_LABEL}={owner}", "--", name])
    if status != 0:
        raise StepFailed(f"cannot create volume {name!r}: {err.strip()[:200]}")
    status, out, _ = docker(policy, ["volume", "inspect", "--format", VOLUME_FORMAT, "--", name])
    fields = out.strip("\n").split("\t")
    if status != 0 or len(fields) != 4 or fields[0] != name:
        raise StepFailed(f"cannot read back volume {name!r}")
    _, driver, options, labels = fields
    mine = json_labels(labels).get(OWNER_LABEL) == owner
    if driver != "local" or options.strip() not in PLAIN_OPTIONS or not mine:
        # Someone made a volume of that name between the decision and now.
        raise StepFailed(f"volume {name!r} appeared meanwhile and is not yours")


def record_name(owner: str, ident: str, tag: str, pin: str) -> str:
    """A pull record's volume name; the pin in it: the agent's next pull of the same tag on
    the same image (a new LastTagTime) makes a new record."""
    import hashlib

    digest = hashlib.sha256(f"{owner}\0{ident}\0{tag}\0{pin}".encode()).hexdigest()[:40]
    return RECORD_PREFIX + digest


def pin_tag() -> tuple[str, str]:
    """(repository, tag) of a pulled-by-digest image's tag for an instant: random, so that it
    names no one's image and no one can have named it."""
    import secrets

    return PIN_TAG_PREFIX + secrets.token_hex(16), "pin"


def renewed_records(records: list[tuple[str, str, str]], before: str, pin: str,
                    tag: str) -> tuple[list[str], list[str]]:
    """From the profile's records of an image, (name, tag, pin) each, when gatekeeper moved its
    LastTagTime from `before` to `pin` to record `tag`: (the tags to record with `pin`: `tag`
    and those the records pinned the image with until now, the names of the records left
    stale, which pin another time and can never count again)."""
    kept = [recorded for _, recorded, pinned in records if before and pinned == before]
    stale = [name for name, _, pinned in records if pinned != pin and name.startswith(RECORD_PREFIX)]
    return list(dict.fromkeys([tag, *kept])), stale


PIN_FORMAT = "{{.Id}}\t{{json .RepoTags}}\t{{json .Metadata.LastTagTime}}"


def image_pin(policy: Policy, ref: str) -> tuple[str, list[str], str]:
    """(ID, tags, LastTagTime pin) of the image `ref` names now; ("", [], "") none."""
    import json

    from gatekeeper.owner import tag_time_pin

    status, out, _ = docker(policy, ["image", "inspect", "--format", PIN_FORMAT, "--", ref])
    ident, tags, tagged = [*out.strip().split("\t", 2), "", "", ""][:3]
    if status != 0 or not ident.startswith("sha256:"):
        return "", [], ""
    names = json.loads(tags or "null")
    return ident, [str(n) for n in names] if isinstance(names, list) else [], tag_time_pin(tagged)


def pin_pull(policy: Policy, ref: str) -> bool:
    """Put a tag on the image `ref` names, so that the engine sets its LastTagTime to now: REF
    itself (the image it names keeps it), or for a pull by digest a random tag removed at once."""
    if "@" not in ref:
        return docker(policy, ["image", "tag", "--", ref, ref])[0] == 0
    repository, tag = pin_tag()
    if docker(policy, ["image", "tag", "--", ref, f"{repository}:{tag}"])[0] != 0:
        return False
    return docker(policy, ["image", "rm", "--", f"{repository}:{tag}"])[0] == 0


def record_pull(policy: Policy, ref: str, when: str, before: dict[str, str]) -> None:
    """Record the tag the pull put on the image (REF's; "" for a pull by digest). Only that
    tag: another tag on the same image (the operator's, before or during the pull) is not
    the agent's, and keeps the image out of its reach (vetting.namespaces.pulled_by_agent).
    The record pins the image's LastTagTime after pin_pull (gatekeeper.owner.PULLED_TAG_TIME);
    the profile's other records of the image carry over to it, and the stale ones go.
    The proxy records its pulls with the same meaning (gatekeeper.proxy.pulls)."""
    if when == "new" and ref in before:
        return  # the tag appeared between the decision and the pull: not the agent's
    ident, earlier, pin = pinned(policy, ref)
    tag = "" if "@" in ref else ref
    recorded, stale = renewed_records(pull_records(policy, ident), earlier, pin, tag)
    owner = policy.profile
    for each in recorded:
        labels = [f"{PULLED_BY}={owner}", f"{PULLED_IMAGE}={ident}", f"{PULLED_TAG}={each}",
                  f"{PULLED_TAG_TIME}={pin}"]
        args = ["volume", "create", *(w for label in labels for w in ("--label", label)), "--",
                record_name(owner, ident, each, pin)]
        if docker(policy, args)[0] != 0:
            raise StepFailed(f"cannot record the pull of {ref!r}")
    if stale:
        docker(policy, ["volume", "rm", "--", *stale])


def pinned(policy: Policy, ref: str) -> tuple[str, str, str]:
    """pin_pull on the image `ref` names: its ID, its LastTagTime before (if the pull had not
    moved the tag: "" otherwise, nothing carries over) and after. StepFailed: nothing to record."""
    first, _, earlier = image_pin(policy, ref)
    if not first:
        raise StepFailed(f"cannot record the pull of {ref!r}: the image is not there")
    if not pin_pull(policy, ref):
        raise StepFailed(f"cannot record the pull of {ref!r}: the image could not be tagged")
    ident, tags, pin = image_pin(policy, ref)
    if not ident or ("@" not in ref and ref not in tags):
        raise StepFailed(f"cannot record the pull of {ref!r}: the tag names another image now")
    if not pin:
        raise StepFailed(f"cannot record the pull of {ref!r}: the engine gives the image no LastTagTime")
    return ident, earlier if first == ident else "", pin


def pull_records(policy: Policy, ident: str) -> list[tuple[str, str, str]]:
    """(name, tag, pin) of this profile's pull records of image `ident`."""
    template = f'{{{{.Name}}}}\t{{{{.Label "{PULLED_TAG}"}}}}\t{{{{.Label "{PULLED_TAG_TIME}"}}}}'
    status, out, _ = docker(policy, ["volume", "ls", "--filter", f"label={PULLED_BY}={policy.profile}",
                                     "--filter", f"label={PULLED_IMAGE}={ident}", "--format", template])
    if status != 0:
        return []
    return [(name, tag, pinned) for name, tag, pinned in
            ([*line.split("\t", 2), "", ""][:3] for line in out.splitlines()) if name]


def forget_pull(policy: Policy, ident: str) -> None:
    forget_records(policy, ident, PULLED_BY, PULLED_IMAGE, RECORD_PREFIX)


def forget_records(policy: Policy, ident: str, by: str, image: str, prefix: str) -> None:
    """The profile's records (volumes named `prefix`..., labelled by=<profile>, image=<ident>)
    of an image that is gone: pull records here, build records (gatekeeper.build_records)."""
    if docker(policy, ["image", "inspect", "--format", "{{.Id}}", "--", ident])[0] == 0:
        return  # still there (another tag, or in use): keep the record
    status, out, _ = docker(policy, ["volume", "ls", "-q", "--filter", f"label={by}={policy.profile}",
                                     "--filter", f"label={image}={ident}"])
    names = [n for n in out.split() if n.startswith(prefix)]
    if status == 0 and names:
        docker(policy, ["volume", "rm", "--", *names])


# ---------------------------------------------------------------- stale records


def stale_records(pulls: list[tuple[str, str, str]], builds: list[tuple[str, str]],
                  images: dict[str, str]) -> list[str]:
    """The names of records that can never count again: of pull records (name, image ID, pin)
    those whose image is gone or has another LastTagTime than the pin (or the record none), of
    build records (name, image ID) those whose image is gone. `images`: ID -> its pin ("" none)
    of every named image the engine has. Both layers (gatekeeper.proxy.pulls)."""
    from gatekeeper.build_records import RECORD_PREFIX as BUILT_PREFIX

    stale = [name for name, ident, pin in pulls
             if name.startswith(RECORD_PREFIX) and (ident not in images or not pin or pin != images[ident])]
    return stale + [name for name, ident in builds if name.startswith(BUILT_PREFIX) and ident not in images]


def sweep_records(policy: Policy) -> None:
    """records-sweep: the profile's records that can never count again go (stale_records). An
    engine that cannot say which images it has sweeps nothing."""
    from gatekeeper.engine_objects import only_not_found
    from gatekeeper.owner import tag_time_pin

    pulls = [(n, i, p) for n, i, p in profile_records(policy, PULLED_BY, PULLED_IMAGE, PULLED_TAG_TIME)]
    builds = [(n, i) for n, i, _ in profile_records(policy, BUILT_BY, BUILT_IMAGE, BUILT_IMAGE)]
    idents = sorted({ident for _, ident, _ in pulls} | {ident for _, ident in builds})
    if not idents:
        return
    args = ["image", "inspect", "--format", "{{.Id}}\t{{json .Metadata.LastTagTime}}", "--", *idents]
    status, out, err = docker(policy, args)
    if status != 0 and not only_not_found(err.encode()):
        return
    answers = (line.partition("\t") for line in out.splitlines())
    images = {ident: tag_time_pin(pin) for ident, _, pin in answers}
    stale = stale_records(pulls, builds, images)
    if stale:
        docker(policy, ["volume", "rm", "--", *stale])


def profile_records(policy: Policy, by: str, image: str, pin: str) -> list[tuple[str, str, str]]:
    """(name, image ID, `pin` label) of the profile's records labelled `by`; none when the
    engine cannot say."""
    template = f'{{{{.Name}}}}\t{{{{.Label "{image}"}}}}\t{{{{.Label "{pin}"}}}}'
    status, out, _ = docker(policy, ["volume", "ls", "--filter", f"label={by}={policy.profile}",
                                     "--format", template])
    if status != 0:
        return []
    return [(name, ident, pinned) for name, ident, pinned in
            ([*line.split("\t", 2), "", ""][:3] for line in out.splitlines()) if name]


# ---------------------------------------------------------------- build records


class BuiltLater:
    """The image IDs the profile's build records name (gatekeeper.build_records), asked of the
    engine the first time an image's ownership is in question (a redaction filter's)."""

    __slots__ = ("policy", "known")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.known: frozenset[str] | None = None

    def __contains__(self, ident: object) -> bool:
        if self.known is None:
            self.known = frozenset(recorded_builds(self.policy))
        return ident in self.known


def recorded_builds(policy: Policy) -> set[str]:
    """The image IDs this profile's build records name; none when the engine cannot say."""
    args = ["volume", "ls", "--filter", f"label={BUILT_BY}={policy.profile}",
            "--format", f'{{{{.Label "{BUILT_IMAGE}"}}}}|']
    status, out, _ = docker(policy, args)
    if status != 0:
        return set()
    return {line[:-1] for line in out.splitlines() if line.startswith("sha256:") and line.endswith("|")}


IMAGE_FACTS = '{{.Id}}\t{{.Created}}\t{{json .Config.Labels}}'


def record_builds(policy: Policy, tags: list[str], started: float) -> None:
    """Record the images the build's tags name now, each made by this build (its owner
    label, created after the command started): gatekeeper.build_records."""
    from gatekeeper.build_records import record_labels, record_name, worth_recording
    from gatekeeper.engine_objects import json_labels

    owner, failed = policy.profile, []
    for tag in dict.fromkeys(tags):
        status, out, _ = docker(policy, ["image", "inspect", "--format", IMAGE_FACTS, "--", tag])
        ident, created, labels = [*out.strip().split("\t", 2), "", "", ""][:3]
        if status != 0 or not ident.startswith("sha256:"):
            failed.append(tag)
            continue
        if not worth_recording(json_labels(labels), owner, created, started):
            continue  # not made by this command (compose did not rebuild it), or not ours
        made = record_labels(owner, ident)
        labels_args = [w for key, value in made.items() for w in ("--label", f"{key}={value}")]
        args = ["volume", "create", *labels_args, "--", record_name(owner, ident)]
        if docker(policy, args)[0] != 0:
            failed.append(tag)
    if failed:
        raise StepFailed(f"cannot record the build of {', '.join(map(repr, failed))}: run it again to use it")


def forget_build(policy: Policy, ident: str) -> None:
    from gatekeeper.build_records import RECORD_PREFIX as BUILT_PREFIX

    forget_records(policy, ident, BUILT_BY, BUILT_IMAGE, BUILT_PREFIX)
