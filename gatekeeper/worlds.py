"""The worlds production decides in (gatekeeper.world.World is their interface).

* `RealWorld`: the file system and the docker engine as they are (the
  ForceCommand, `gatekeeper check`).
* `OfflineEngineWorld`: the real file system and compose renders, but no engine
  objects (`gatekeeper check --offline`, `gatekeeper replay`): owners are runtime
  state the question is not about. Its engine answers come from `offline_answer`.
"""

from __future__ import annotations

import posix  # os's system calls without importing os (gatekeeper.environment)

from gatekeeper.errors import Denied

CONTAINER, IMAGE = "container", "image"  # the kinds gatekeeper.vetting.ownership asks about

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.inflight import Registration, Registry
    from gatekeeper.policy import Policy
    from gatekeeper.world import Claim, EngineAnswer

ONE_MIB = 1 << 20
DISK_USAGE_TIMEOUT = 60.0  # the engine walks every volume to size it


class RealWorld:
    """The file system and docker engine as they are.

    `run_docker` is how a decision asks the engine something (render a compose
    project, find a container's owner): the pinned binary, the policy's clean
    environment, cwd = workdir, under time, memory and output limits
    (gatekeeper.bounded). It returns (status, stdout, stderr).
    Inspect queries of known templates are answered from the engine's API socket
    instead (time and size bounded too), printed as the CLI would (gatekeeper.engine_api).

    `claims_in_flight` answers what other live gatekeeper sessions are about to
    bind or write (gatekeeper.inflight). Only the ForceCommand gives a registry
    (or its state directory, and the registry is opened when first asked: a
    command without host paths never loads gatekeeper.inflight): asking takes
    the lock that serialises host-path commands, held until the decision's own
    claims are registered (`settle`). Without one (gatekeeper check), no other
    session is assumed in flight.
    """

    __slots__ = ("registry", "state_dir", "stdin_fd")

    def __init__(self, registry: Registry | None = None, state_dir: str | None = None,
                 stdin_fd: int | None = None) -> None:
        self.registry = registry
        self.state_dir = state_dir
        self.stdin_fd = stdin_fd  # the client's stdin: only the ForceCommand has one

    def addresses(self, name: str) -> list[str]:
        return host_addresses(name)

    def read_stdin(self, limit: int = ONE_MIB) -> bytes | None:
        """At most `limit`+1 bytes of the client's stdin (to its end), or None without a client."""
        if self.stdin_fd is None:
            return None
        chunks, size = [], 0
        while size <= limit:
            chunk = posix.read(self.stdin_fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    def claims_in_flight(self, policy: Policy) -> list[Claim]:
        if self.registry is None and self.state_dir is not None:
            from gatekeeper.inflight import Registry

            self.registry = Registry(self.state_dir)
        if self.registry is None:
            return []
        return self.registry.locked_claims()

    def settle(self, claims: list[Claim] | None) -> Registration | None:
        """After the decision: register `claims` (None = denied) and drop the lock.
        Returns the registration to release when the command has ended. A registry
        never asked holds no lock, so it has nothing to register (inflight.Registry.settle)."""
        if self.registry is None:
            return None
        return self.registry.settle(claims)

    def realpath(self, path: str) -> str:
        import os  # host paths only: a command without them never imports os

        resolved = os.path.realpath(path)
        check_resolution(resolved)
        return resolved

    def inert_mount(self, path: str) -> bool:
        return mount_is_inert(path)

    def read_pinned(self, path: str, limit: int = ONE_MIB) -> bytes:
        """The bytes of a resolved host file the CLI would read, opened without following
        any symlink on the way (a link there now is a swap since the path was resolved)."""
        from gatekeeper.pinning import read_without_symlinks

        return read_without_symlinks(path, limit)

    def new_stage(self) -> str:
        """A fresh private directory a compose render reads its files from
        (gatekeeper.vetting.compose_render): in the state directory, or a temporary one."""
        import time

        from gatekeeper.pinning import new_stage

        try:
            return new_stage(self.state_dir, time.time())
        except OSError as error:
            raise Denied(f"cannot stage the compose project ({error.strerror})",
                         rule="compose-render") from None

    def stage_files(self, root: str, files: dict[str, bytes]) -> None:
        """Write `files` (absolute path -> bytes) at root + path (gatekeeper.pinning.stage_files)."""
        from gatekeeper.pinning import stage_files

        try:
            stage_files(root, files)
        except OSError as error:
            raise Denied(f"cannot stage the compose project ({error.strerror})",
                         rule="compose-render") from None

    def drop_stage(self, root: str) -> None:
        from gatekeeper.pinning import drop_stage

        drop_stage(root)

    def read_file(self, path: str, limit: int = ONE_MIB) -> bytes:
        """At most `limit`+1 bytes of a file the decision must look into (compose files)."""
        try:
            with open(path, "rb") as handle:
                return handle.read(limit + 1)
        except FileNotFoundError:
            return b""  # nothing to look into; the tool that needs it reports the error
        except OSError as error:
            raise Denied(f"cannot read {path!r}: {error.strerror}", rule="host-path") from None

    def run_docker(self, policy: Policy, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> EngineAnswer:
        if stdin is None:
            # inspect queries of known templates: one HTTP request, no second process
            from gatekeeper.engine_api import answer_from_api

            answer = answer_from_api(policy.host, args, timeout)
            if answer is not None:
                return answer
        return self.run_docker_cli(policy, args, stdin, timeout)

    def disk_usage(self, policy: Policy) -> dict[str, object]:
        """The engine's /system/df (gatekeeper.vetting.disk_budget); Denied if it does not answer."""
        from gatekeeper.engine_api import EngineError, disk_usage, shown

        try:
            return disk_usage(policy.host, DISK_USAGE_TIMEOUT)
        except (EngineError, OSError) as error:
            raise Denied("cannot learn the engine's disk usage for [limits] disk_budget: "
                         f"{shown(str(error))}", rule="disk-budget") from None

    def run_docker_cli(self, policy: Policy, args: list[str], stdin: bytes | None = None,
                       timeout: float = 60.0) -> EngineAnswer:
        """The pinned docker CLI (the reference the API answers are tested against)."""
        from gatekeeper.bounded import run_bounded
        from gatekeeper.execution import child_environment

        # memory, time and output bounded: past a limit, Denied (rule decision-limit)
        return run_bounded([policy.binary, *args], stdin, child_environment(policy), policy.workdir, timeout)


class OfflineEngineWorld(RealWorld):
    """The real file system and compose renders, but no engine objects: ownership
    queries see exactly the named objects, all the agent's; no other container
    holds a bind source and no session is in flight. For `gatekeeper replay`
    and `check`, where owners are runtime state the question is not about."""

    __slots__ = ()

    def run_docker(self, policy: Policy, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> EngineAnswer:
        if args[:1] == ["compose"]:
            return super().run_docker(policy, args, stdin, timeout)
        return offline_answer(policy, args)

    def inert_mount(self, path: str) -> bool:
        """The deployment's mounts, like its owners, are runtime state the question is not
        about: taken as install step area-mount makes them (`gatekeeper doctor` checks that)."""
        return True

    def disk_usage(self, policy: Policy) -> dict[str, object]:
        return {}  # no engine objects in this world: nothing counts against a budget


def offline_answer(policy: Policy, args: list[str]) -> EngineAnswer:
    """What an engine would answer whose only objects are the ones named, all the
    agent's, under their own names: ownership is runtime state a world without an
    engine cannot know. Anything else is answered 'no engine' (status 1)."""
    import json

    from gatekeeper.build_records import RECORD_PREFIX as BUILT_PREFIX
    from gatekeeper.label_rules import created_labels
    from gatekeeper.owner import BUILT_IMAGE
    from gatekeeper.vetting.binds import CONTAINER_FORMAT
    from gatekeeper.vetting.images import TRIGGERS_FORMAT
    from gatekeeper.vetting.limits import HEALTH_FORMAT
    from gatekeeper.vetting.volumes import VOLUME_FORMAT

    # Images present: a build's bases (linux/amd64, the agent's) without ONBUILD steps, none
    # with a HEALTHCHECK.
    if args[:3] == ["image", "inspect", "--format"] and args[3:4] in ([TRIGGERS_FORMAT], [HEALTH_FORMAT]):
        owned = json.dumps(created_labels(policy.profile, container=False))
        lines = [f"linux/amd64\tnull\t{word}\t{json.dumps([word])}\t[]\t{owned}\n"
                 if args[3] == TRIGGERS_FORMAT else "null\n" for word in args[5:]]
        return 0, "".join(lines).encode(), b""
    if args[:4] == ["volume", "inspect", "--format", VOLUME_FORMAT]:
        return 0, b"", b""  # named volumes do not exist yet, so docker makes them plain
    if args[:4] == ["container", "inspect", "--format", CONTAINER_FORMAT]:
        lines = [json.dumps({"Id": word, "Name": "/" + word}) + "\n" for word in args[5:]]
        return 0, "".join(lines).encode(), b""  # named containers hold no bind sources
    if args[1:3] == ["inspect", "--format"] and args[4:5] == ["--"]:
        container = args[0] == CONTAINER
        labels = json.dumps(created_labels(policy.profile, container=container))
        lines = [f"{word}\t{json.dumps(spelled_name(args[0], word))}\t{labels}" for word in args[5:]]
        if container:  # each runs an image of its own, which the agent built (no gatekeeper.created)
            lines = [f"{line}\t{word}-image" for line, word in zip(lines, args[5:], strict=True)]
        return 0, "".join(line + "\n" for line in lines).encode(), b""
    if args[1:2] == ["ls"]:
        built = args[0] == "volume" and any(a.startswith(f"label={BUILT_IMAGE}=") for a in args)
        return 0, f"{BUILT_PREFIX}offline\n".encode() if built else b"", b""  # its images: the agent's builds
    return 1, b"", b"no engine in this world"


def spelled_name(kind: str, word: str) -> object:
    """The name as the engine spells it: a container's "/name", an image's ["tag"]."""
    return "/" + word if kind == CONTAINER else [word] if kind == IMAGE else word


def mount_is_inert(path: str) -> bool:
    """Whether the mount holding `path` (or its nearest existing ancestor: docker creates a
    missing bind source there) has nosuid and nodev; False when that cannot be read."""
    import os  # host paths only

    wanted = os.ST_NOSUID | os.ST_NODEV
    probe = path
    while True:
        try:
            return os.statvfs(probe).f_flag & wanted == wanted
        except FileNotFoundError:
            parent = os.path.dirname(probe)
            if parent == probe:
                return False
            probe = parent
        except OSError:
            return False


def check_resolution(resolved: str) -> None:
    """Prove docker (as root) resolves `resolved` to itself, and that it is a plain file or directory.

    os.path.realpath takes a component it cannot lstat (EACCES inside a root-owned
    0700 directory a container made) for a plain name; the daemon, as root, would
    follow a symlink planted there (`locked/escape -> /`). A device node, FIFO or
    socket is refused too: a 0666 block device planted by a container would turn
    --env-file or --secret into a raw read of the host disk.
    """
    import os  # host paths only
    import stat

    prefix, mode = "", stat.S_IFDIR
    for part in resolved.strip("/").split("/"):
        prefix += "/" + part
        try:
            mode = os.lstat(prefix).st_mode
        except FileNotFoundError:
            return  # the rest does not exist yet, so nothing below can be a link
        except OSError as error:
            raise Denied(f"host path {resolved!r}: cannot inspect {prefix!r} ({error.strerror}), "
                         "so a link there could not be followed", rule="host-path-unreadable") from None
        if stat.S_ISLNK(mode):
            raise Denied(f"host path {resolved!r}: {prefix!r} became a symlink", rule="host-path")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise Denied(f"host path {resolved!r} is a device, FIFO or socket", rule="host-path-special")


def host_addresses(name: str) -> list[str]:
    """The addresses `name` resolves to on this host (/etc/hosts, then DNS: what the engine's
    resolver reads too); [] when it does not resolve."""
    import socket

    try:
        found = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in found})
