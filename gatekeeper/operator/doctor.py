"""`gatekeeper doctor`: check a deployment end to end and say what to fix.

In the spirit of `sshd -t`: each check prints ok, warn or FAIL with the fix;
exit status 0 when nothing fails, 1 when something does (warnings do not
fail), 2 on a usage error. `--json` prints one object for scripts.

What is checked (the layout sshd_snippets/install.sh makes): the policy file
(root-owned, nobody else can write it, and it lints clean), its compiled copy
(fresh), docker.config_dir (root-owned), the pinned docker binary (root-owned,
nobody else can write it or a directory on its way, symlinks followed), the
state directory ([paths] state_dir: the agent's own 0700 directory, or one it can
make, below directories only root or the agent can write), the audit log (root:root 0600 where the
proxy writes it, [audit] via_proxy; else root:AGENT 0620 and a warning; append-only,
in a root:root 0755 directory), the agent's keys file
(/etc/ssh/authorized_keys/AGENT, root-owned, not writable by others), the
agent account (exists, login shell /bin/sh: sshd runs the ForceCommand through
it), each allowed root on a nosuid,nodev mount (live only), PAM (pam_env must
not read ~/.pam_environment: user_readenv=1), the
agent's way to the engine (only through the proxy's socket: a warning when it can
reach the engine's own socket, the docker group being root) and the socket docker.host
names, the entry script's module bundle (current: gatekeeper.module_bundle), the
resident ForceCommand (the drop-in's default: its unit root's alone to write, its
client root-owned, and live, the pool's socket there, root:<agent's group> 0660 in a
root:root 0755 directory: without it the client denies every call), and the
effective sshd settings (`gatekeeper sshd-check`, when installed).

Every path is taken below ``--root`` (default /), so a copy of a deployment
can be checked, and the tests build broken deployments in a temporary
directory; checks that need the live system (socket, sshd) run only at /.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Final

OK: Final = "ok"
WARN: Final = "warn"
FAIL: Final = "FAIL"
SKIP: Final = "skip"

DEFAULT_POLICY: Final = "/etc/gatekeeper/policy.toml"
DEFAULT_AGENT: Final = "ai-worker"
RESIDENT_UNIT: Final = "/etc/systemd/system/gatekeeper-resident.service"
RESIDENT_FIX: Final = "sh sshd_snippets/install.sh resident (or the fallback: sshd_snippets/README.md)"
FS_IOC_GETFLAGS: Final = 0x80086601
FS_APPEND_FL: Final = 0x20

EXAMPLES: Final = """\
examples:
  gatekeeper doctor                      check this machine's deployment
  gatekeeper doctor --json | jq '.checks[] | select(.status == "FAIL")'
  gatekeeper doctor --root /mnt/image --policy /etc/gatekeeper/policy.toml

Exit status: 0 nothing fails (warnings allowed), 1 something fails, 2 usage error.
"""


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"\n        fix: {self.fix}" if self.fix and self.status in (FAIL, WARN) else ""
        return f"{self.status:>4}  {self.name}: {self.detail}{fix}"


def is_append_only(path: str) -> bool | None:
    """The file's append-only attribute (lsattr 'a'), None if it cannot be read."""
    import fcntl
    import struct

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        flags = struct.unpack("l", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8))[0]
    except OSError:
        return None
    finally:
        os.close(fd)
    return bool(flags & FS_APPEND_FL)


@dataclass
class Deployment:
    """Where to look; the live-system probes are replaceable for tests."""

    root: str = "/"
    policy: str = DEFAULT_POLICY
    agent: str = DEFAULT_AGENT
    append_only: Callable[[str], bool | None] = is_append_only
    live: bool = field(default=True)  # socket and sshd checks (only meaningful at /)
    sshd_config: str = "/etc/ssh/sshd_config"
    # The ForceCommand's entry script (`gatekeeper install-entry`) of this installation.
    entry_script: str = field(default_factory=lambda: os.path.join(sys.prefix, "bin", "gatekeeper-ssh"))

    def path(self, absolute: str) -> str:
        return os.path.join(self.root, absolute.lstrip("/")) if self.root != "/" else absolute


# ---------------------------------------------------------------- helpers


def stat_of(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def owner_mode(info: os.stat_result) -> str:
    return f"uid {info.st_uid} gid {info.st_gid} mode {stat.S_IMODE(info.st_mode):04o}"


def passwd_entry(deployment: Deployment) -> list[str] | None:
    try:
        with open(deployment.path("/etc/passwd"), encoding="utf-8") as handle:
            for line in handle:
                fields = line.rstrip("\n").split(":")
                if fields[0] == deployment.agent and len(fields) >= 7:
                    return fields
    except OSError:
        return None
    return None


def group_entry(deployment: Deployment, name: str) -> list[str] | None:
    try:
        with open(deployment.path("/etc/group"), encoding="utf-8") as handle:
            for line in handle:
                fields = line.rstrip("\n").split(":")
                if fields[0] == name and len(fields) >= 4:
                    return fields
    except OSError:
        return None
    return None


def group_id(deployment: Deployment, name: str) -> int | None:
    entry = group_entry(deployment, name)
    return int(entry[2]) if entry and entry[2].isdigit() else None


def root_only_writable(info: os.stat_result) -> bool:
    return info.st_uid == 0 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


# ---------------------------------------------------------------- checks


def check_policy(deployment: Deployment) -> Iterator[Check]:
    from gatekeeper.operator.lint import ERROR, Context, lint

    path = deployment.path(deployment.policy)
    info = stat_of(path)
    if info is None:
        yield Check(
            "policy",
            FAIL,
            f"{deployment.policy} does not exist (every command is refused, exit 78)",
            "sh sshd_snippets/install.sh policy",
        )
        return
    if not stat.S_ISREG(info.st_mode):
        yield Check("policy", FAIL, f"{deployment.policy} is not a regular file", "replace it with a file")
        return
    if not root_only_writable(info):
        yield Check(
            "policy",
            FAIL,
            f"{deployment.policy}: {owner_mode(info)}: someone besides root can change it",
            f"chown root:root {deployment.policy} && chmod 0644 {deployment.policy}",
        )
    errors = [finding for finding in lint(path, Context(stat=os.stat)) if finding.level == ERROR]
    errors = [finding for finding in errors if finding.what not in ("file mode", "docker.config_dir")]
    if errors:
        yield Check(
            "policy",
            FAIL,
            f"{len(errors)} lint error(s), first: {errors[0]}",
            f"gatekeeper policy check {deployment.policy}",
        )
    elif root_only_writable(info):
        yield Check("policy", OK, f"{deployment.policy} root-owned, lints clean")
    yield from check_compiled(deployment, path)


def check_compiled(deployment: Deployment, path: str) -> Iterator[Check]:
    from gatekeeper.digest import sha256_hex
    from gatekeeper.policy import COMPILED_SUFFIX, compiled_overrides, read_policy_file

    try:
        sha256 = sha256_hex(read_policy_file(path))
    except Exception:  # noqa: BLE001 - reported by check_policy
        return
    if compiled_overrides(path, sha256) is not None:
        yield Check("compiled policy", OK, f"{deployment.policy}{COMPILED_SUFFIX} is current")
    elif os.path.lexists(path + COMPILED_SUFFIX):
        yield Check(
            "compiled policy",
            FAIL,
            f"{deployment.policy}{COMPILED_SUFFIX} is stale or untrusted "
            "(ignored: every command parses TOML)",
            f"gatekeeper policy compile {deployment.policy}",
        )
    else:
        yield Check(
            "compiled policy",
            WARN,
            "none (every command parses TOML)",
            f"gatekeeper policy compile {deployment.policy}",
        )


def load_settings(deployment: Deployment) -> dict[str, dict[str, object]] | None:
    from gatekeeper.errors import PolicyError
    from gatekeeper.policy import load_policy

    try:
        return load_policy(deployment.path(deployment.policy)).settings
    except PolicyError:
        return None


def check_config_dir(deployment: Deployment, settings: dict[str, dict[str, object]]) -> Iterator[Check]:
    config_dir = str(settings["docker"]["config_dir"])
    info = stat_of(deployment.path(config_dir))
    if info is None or not stat.S_ISDIR(info.st_mode):
        yield Check(
            "docker config_dir",
            FAIL,
            f"{config_dir} is not a directory",
            f"install -d -o root -g root -m 0755 {config_dir}",
        )
    elif not root_only_writable(info):
        yield Check(
            "docker config_dir",
            FAIL,
            f"{config_dir}: {owner_mode(info)}: its owner can plant CLI plugins",
            f"chown root:root {config_dir} && chmod 0755 {config_dir}",
        )
    else:
        yield Check("docker config_dir", OK, f"{config_dir} root-owned")


def check_audit_log(deployment: Deployment, settings: dict[str, dict[str, object]]) -> Iterator[Check]:
    log = str(settings["audit"]["path"])
    directory = os.path.dirname(log)
    fix = "sh sshd_snippets/install.sh audit-log"
    dir_info = stat_of(deployment.path(directory))
    if dir_info is None or not stat.S_ISDIR(dir_info.st_mode):
        yield Check("audit log", FAIL, f"{directory} does not exist (every command fails with exit 75)", fix)
        return
    if dir_info.st_uid != 0 or dir_info.st_gid != 0 or stat.S_IMODE(dir_info.st_mode) != 0o755:
        yield Check(
            "audit log",
            FAIL,
            f"{directory}: {owner_mode(dir_info)}, must be root:root 0755",
            f"chown root:root {directory} && chmod 0755 {directory}",
        )
    info = stat_of(deployment.path(log))
    if info is None or not stat.S_ISREG(info.st_mode):
        yield Check(
            "audit log", FAIL, f"{log} is missing or not a regular file (every command fails, exit 75)", fix
        )
        return
    owner, group, mode = log_layout(deployment, settings)
    wanted = (0, 0 if group == "root" else group_id(deployment, group), mode)
    if (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != wanted:
        yield Check(
            "audit log",
            FAIL,
            f"{log}: {owner_mode(info)}, must be {owner}:{group} {mode:04o}",
            f"chattr -a {log}; chown {owner}:{group} {log}; chmod {mode:04o} {log}; chattr +a {log}",
        )
    append_only = deployment.append_only(deployment.path(log))
    if append_only is False:
        yield Check(
            "audit log",
            FAIL,
            f"{log} is not append-only: the agent's account could rewrite history",
            f"chattr +a {log}",
        )
    elif append_only is None:
        yield Check("audit log", WARN, f"cannot read the attributes of {log}", f"lsattr {log} must show 'a'")
    elif (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == wanted:
        yield Check("audit log", OK, f"{log} {owner}:{group} {mode:04o}, append-only")
    if not via_proxy(settings):
        yield Check(
            "audit log",
            WARN,
            f"the agent's account can append lines of its choosing to {log} (no [audit] via_proxy)",
            "run gatekeeper proxy (install.sh proxy) and set [audit] via_proxy = true; install.sh audit-log",
        )
    else:
        yield check_log_room(log, info.st_size, settings)


# Past this share of [audit] max_bytes, doctor warns: the proxy will soon refuse everything.
ROOM_WARN = 0.8


def check_log_room(log: str, size: int, settings: dict[str, dict[str, object]]) -> Check:
    """The live log against [audit] max_bytes, past which the proxy refuses every request."""
    ceiling = settings["audit"].get("max_bytes", 0)
    rotate = "logrotate -f /etc/logrotate.d/gatekeeper"
    if not isinstance(ceiling, int) or not ceiling:
        return Check("audit log room", WARN, "no [audit] max_bytes: a flood of requests can fill the file "
                     f"system of {log}", "set [audit] max_bytes; keep the log on a file system of its own")
    if size >= ceiling:
        return Check("audit log room", FAIL, f"{log} has {size} bytes, [audit] max_bytes = {ceiling}: the "
                     "proxy refuses every request (rule audit-full)", rotate)
    if size >= ceiling * ROOM_WARN:
        return Check("audit log room", WARN, f"{log} has {size} of [audit] max_bytes = {ceiling} bytes; past "
                     "it the proxy refuses every request (rule audit-full)", rotate)
    share = settings["audit"].get("max_bytes_per_uid", 0)
    if not isinstance(share, int) or not 0 < share < ceiling:
        return Check("audit log room", WARN, f"{log} has {size} of [audit] max_bytes = {ceiling} bytes, and "
                     f"[audit] max_bytes_per_uid = {share} is no share of it: one account's flood fills it "
                     "and every account is refused (audit-full)",
                     "set [audit] max_bytes_per_uid below max_bytes; the log on a file system of its own")
    return Check("audit log room", OK, f"{log} has {size} of [audit] max_bytes = {ceiling} bytes; one uid's "
                 f"records may take {share} of it (audit-share-full past that)")


def via_proxy(settings: dict[str, dict[str, object]]) -> bool:
    return bool(settings["audit"].get("via_proxy"))


def log_layout(deployment: Deployment, settings: dict[str, dict[str, object]]) -> tuple[str, str, int]:
    """Owner, group and mode of the live log: only the proxy writes it with [audit] via_proxy,
    else the agent's gatekeeper appends (install.sh's audit-log step makes either)."""
    return ("root", "root", 0o600) if via_proxy(settings) else ("root", deployment.agent, 0o620)


def walk(deployment: Deployment, absolute: str) -> Iterator[tuple[str, os.stat_result | None]]:
    """Every path the kernel looks at to reach ABSOLUTE, in order: each directory from /,
    each symlink and then what it points to (inside --root); None for one that is missing."""
    import posixpath

    pending = [part for part in absolute.split("/") if part not in ("", ".")]
    current, hops = "/", 0
    yield current, stat_of(deployment.path(current))
    while pending:
        part = pending.pop(0)
        if part == "..":
            current = posixpath.dirname(current)
            continue
        candidate = posixpath.join(current, part)
        info = stat_of(deployment.path(candidate))
        yield candidate, info
        if info is None:
            return
        if not stat.S_ISLNK(info.st_mode):
            current = candidate
            continue
        hops += 1
        target = os.readlink(deployment.path(candidate))
        if hops > 40:  # the kernel's ELOOP limit
            yield target, None
            return
        current = "/" if target.startswith("/") else current
        pending = [part for part in target.split("/") if part not in ("", ".")] + pending


def check_docker_binary(deployment: Deployment, settings: dict[str, dict[str, object]]) -> Iterator[Check]:
    """The pinned CLI runs with the agent's docker group: whoever can replace it, or a
    directory on its way (a symlink into one), runs code with the engine's root."""
    binary = str(settings["docker"]["binary"])
    steps = list(walk(deployment, binary))
    final_path, final = steps[-1]
    if final is None:
        missing = f"{binary}: {final_path} does not exist"
        yield Check("docker binary", FAIL, missing, "apt-get install docker.io, or fix docker.binary")
        return
    for path, info in steps[:-1]:
        if info is not None and stat.S_ISDIR(info.st_mode) and not root_only_writable(info):
            yield Check(
                "docker binary",
                FAIL,
                f"{binary}: directory {path} on its way is {owner_mode(info)}: "
                "its owner can replace the binary",
                f"chown root:root {path} && chmod go-w {path} (or pin a binary under root-owned directories)",
            )
            return
    if not stat.S_ISREG(final.st_mode) or not final.st_mode & stat.S_IXUSR:
        not_program = f"{binary}: {final_path} is not an executable file"
        yield Check("docker binary", FAIL, not_program, "fix docker.binary in the policy")
    elif not root_only_writable(final):
        yield Check(
            "docker binary",
            FAIL,
            f"{binary}: {final_path} is {owner_mode(final)}: someone besides root can change it",
            f"chown root:root {final_path} && chmod 0755 {final_path}",
        )
    else:
        via = f" (via {final_path})" if final_path != binary else ""
        yield Check("docker binary", OK, f"{binary}{via} root-owned, nobody else can write it or its path")


def check_state_dir(deployment: Deployment, settings: dict[str, dict[str, object]]) -> Iterator[Check]:
    """[paths] state_dir holds the in-flight registry: the agent's gatekeeper makes it 0700 and
    refuses host-path commands (rule host-path-state) when it is not the agent's own."""
    import posixpath

    state_dir = posixpath.normpath(str(settings["paths"]["state_dir"]))
    entry = passwd_entry(deployment)
    uid = int(entry[2]) if entry and entry[2].isdigit() else None
    create = f"rm -rf {state_dir} && install -d -m 0700 -o {deployment.agent} {state_dir}"
    parent = posixpath.dirname(state_dir)
    for path, info in walk(deployment, parent):
        if info is None:
            yield Check("state dir", FAIL, f"{state_dir}: {path} does not exist (host paths refused)", create)
            return
        if stat.S_ISDIR(info.st_mode) and (info.st_uid not in (0, uid) or info.st_mode & 0o022):
            yield Check(
                "state dir",
                FAIL,
                f"{state_dir}: {path} is {owner_mode(info)}: others could replace the registry",
                f"set [paths] state_dir inside {deployment.agent}'s home (a top-level dot entry)",
            )
            return
    info = stat_of(deployment.path(state_dir))
    if info is None:
        yield from state_dir_to_create(deployment, state_dir, uid, create)
    elif not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022:  # as inflight.py
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else owner_mode(info)
        yield Check(
            "state dir",
            FAIL,
            f"{state_dir} is {kind}: must be {deployment.agent}'s own directory, writable by nobody else "
            "(host paths are refused, rule host-path-state)",
            create,
        )
    else:
        mode = stat.S_IMODE(info.st_mode)
        yield Check("state dir", OK, f"{state_dir} {deployment.agent}'s own, {mode:04o}")


def state_dir_to_create(
    deployment: Deployment, state_dir: str, uid: int | None, create: str
) -> Iterator[Check]:
    import posixpath

    parent = stat_of(deployment.path(posixpath.dirname(state_dir)))
    if parent is not None and parent.st_uid == uid and uid is not None:
        yield Check("state dir", OK, f"{state_dir} not made yet; the agent's gatekeeper makes it 0700")
    else:
        yield Check(
            "state dir",
            FAIL,
            f"{state_dir} is missing and {deployment.agent} cannot create it (host paths refused)",
            create.split(" && ", 1)[1],
        )


def check_area_mounts(deployment: Deployment, settings: dict[str, dict[str, object]]) -> Iterator[Check]:
    """Each allowed root on a nosuid,nodev mount: bind sources anywhere else are refused
    (rule host-path-mount), since a container's root can plant set-user-ID programs and
    device nodes in them. Live only: mount flags are this machine's."""
    from gatekeeper.worlds import mount_is_inert

    if not deployment.live:
        return
    roots = settings["paths"]["allowed_roots"]
    for root in roots if isinstance(roots, list) else []:
        if mount_is_inert(str(root)):
            yield Check("area mount", OK, f"{root} nosuid,nodev")
        else:
            yield Check("area mount", FAIL, f"{root} is not on a nosuid,nodev mount (every bind refused)",
                        "sh sshd_snippets/install.sh area-mount (or nosuid,nodev in its fstab entry)")


def check_keys_file(deployment: Deployment) -> Iterator[Check]:
    path = f"/etc/ssh/authorized_keys/{deployment.agent}"
    fix = "sh sshd_snippets/install.sh keys-dir"
    for where in (os.path.dirname(path), path):
        info = stat_of(deployment.path(where))
        if info is None:
            yield Check("authorized keys", FAIL, f"{where} does not exist (the agent cannot log in)", fix)
            return
        if not root_only_writable(info):
            yield Check(
                "authorized keys",
                FAIL,
                f"{where}: {owner_mode(info)}: someone besides root can add keys",
                f"chown root:root {where} && chmod go-w {where}",
            )
            return
    home_keys = f"/home/{deployment.agent}/.ssh/authorized_keys"
    if stat_of(deployment.path(home_keys)) is not None:
        yield Check(
            "authorized keys",
            WARN,
            f"{home_keys} exists; the agent can write it",
            f"rm {home_keys} (keys belong in {path}; AuthorizedKeysFile must name only that)",
        )
    else:
        yield Check("authorized keys", OK, f"{path} root-owned")


def check_account(deployment: Deployment) -> Iterator[Check]:
    entry = passwd_entry(deployment)
    if entry is None:
        yield Check(
            "agent account",
            FAIL,
            f"no user {deployment.agent} in /etc/passwd",
            "sh sshd_snippets/install.sh account",
        )
        return
    shell = entry[6]
    if shell != "/bin/sh":
        yield Check(
            "agent account",
            FAIL,
            f"{deployment.agent}'s login shell is {shell!r}: sshd runs the "
            "ForceCommand through it (nologin refuses every command)",
            f"usermod -s /bin/sh {deployment.agent}",
        )
    else:
        yield Check("agent account", OK, f"{deployment.agent} exists, shell /bin/sh")


def check_pam(deployment: Deployment) -> Iterator[Check]:
    path = "/etc/pam.d/sshd"
    try:
        with open(deployment.path(path), encoding="utf-8") as handle:
            lines = [line for line in handle if not line.lstrip().startswith("#")]
    except OSError:
        yield Check("PAM", OK, f"no {path} (no pam_env)")
        return
    if any("pam_env" in line and "user_readenv=1" in line for line in lines):
        yield Check(
            "PAM",
            FAIL,
            f"{path}: pam_env reads ~/.pam_environment (user_readenv=1): the agent could "
            "set LD_PRELOAD for its own shell",
            f"sed -i 's/user_readenv=1/user_readenv=0/' {path}",
        )
    else:
        yield Check("PAM", OK, "pam_env does not read ~/.pam_environment")


PROXY_DEFAULTS: Final = {
    "listen": "/run/gatekeeper/docker.sock", "upstream": "/var/run/docker.sock", "group": "ai-worker",
}  # fmt: skip


def proxy_setting(settings: dict[str, dict[str, object]], key: str) -> str:
    section = settings.get("proxy") or {}
    return str(section.get(key, PROXY_DEFAULTS[key]))


def agent_ids(deployment: Deployment) -> tuple[int | None, set[int]]:
    """The agent's uid and every gid it logs in with (primary and supplementary)."""
    entry = passwd_entry(deployment)
    uid = int(entry[2]) if entry and entry[2].isdigit() else None
    gids = {int(entry[3])} if entry and entry[3].isdigit() else set()
    try:
        with open(deployment.path("/etc/group"), encoding="utf-8") as handle:
            for line in handle:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 4 and deployment.agent in fields[3].split(",") and fields[2].isdigit():
                    gids.add(int(fields[2]))
    except OSError:
        pass
    return uid, gids


def can_connect(info: os.stat_result, uid: int | None, gids: set[int]) -> bool:
    """connect(2) on a unix socket needs write permission on it."""
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IWUSR)
    if info.st_gid in gids:
        return bool(info.st_mode & stat.S_IWGRP)
    return bool(info.st_mode & stat.S_IWOTH)


def reaches_socket(deployment: Deployment, path: str, group: str) -> bool:
    """Whether the agent's account can connect to the socket at `path`; when it is not
    there (a copy of a deployment, an engine that is down), whether it is in `group`."""
    uid, gids = agent_ids(deployment)
    info = stat_of(deployment.path(path))
    if info is not None and stat.S_ISSOCK(info.st_mode):
        return can_connect(info, uid, gids)
    return group_id(deployment, group) in gids


def check_engine_access(deployment: Deployment, settings: dict[str, dict[str, object]]) -> Iterator[Check]:
    """The agent's way to the engine: through the proxy only (docker.host is the proxy's
    socket), never the engine's own socket, which is root; without the proxy, the
    engine's socket directly (it must reach it, and is warned that this is root)."""
    host = str(settings["docker"]["host"]).removeprefix("unix://")
    listen = proxy_setting(settings, "listen")
    if host == listen:
        yield from check_proxied_access(deployment, settings, listen)
    elif reaches_socket(deployment, host, "docker"):
        yield Check(
            "engine access",
            WARN,
            f"{deployment.agent} reaches the engine's socket {host} directly: one slip of the CLI layer "
            "is root",
            f"install.sh proxy; docker.host = \"unix://{listen}\"; gpasswd -d {deployment.agent} docker",
        )
    else:
        yield Check(
            "engine access",
            FAIL,
            f"{deployment.agent} cannot reach {host}: its docker client cannot reach the engine",
            f"usermod -aG docker {deployment.agent} (or deploy gatekeeper proxy: install.sh proxy)",
        )
    yield from check_socket_answers(deployment, settings)


def check_proxied_access(deployment: Deployment, settings: dict[str, dict[str, object]],
                         listen: str) -> Iterator[Check]:  # fmt: skip
    engine = proxy_setting(settings, "upstream")
    if reaches_socket(deployment, engine, "docker"):
        yield Check(
            "engine access",
            WARN,
            f"{deployment.agent} can reach the engine's socket {engine} directly, past the proxy "
            "(the docker group is root)",
            f"gpasswd -d {deployment.agent} docker; pkill -u {deployment.agent} (sessions keep their groups)",
        )
    elif not reaches_socket(deployment, listen, proxy_setting(settings, "group")):
        yield Check(
            "engine access",
            FAIL,
            f"{deployment.agent} cannot reach the proxy's socket {listen}",
            f"[proxy] group = \"{deployment.agent}\"; systemctl restart gatekeeper-proxy",
        )
    else:
        yield Check("engine access", OK, f"{deployment.agent} reaches the engine only through {listen}")


PROXY_UNIT: Final = "/etc/systemd/system/gatekeeper-proxy.service"
TRUE_WORDS: Final = frozenset({"yes", "true", "on", "1"})


def check_proxy_view(deployment: Deployment, settings: dict[str, dict[str, object]]) -> Iterator[Check]:
    """The proxy resolves bind sources (and reads their mount flags) in its own mount
    namespace: a unit that gives it a private or hidden tree where an allowed root lies
    (PrivateTmp and /tmp, ProtectHome=yes and /home, InaccessiblePaths...) makes it judge
    another file system than the one the engine mounts from."""
    if str(settings["docker"]["host"]).removeprefix("unix://") != proxy_setting(settings, "listen"):
        return
    unit = unit_settings(deployment, PROXY_UNIT)
    if unit is None:
        return
    roots = settings["paths"]["allowed_roots"]
    hidden = [(root, where, key) for root in (roots if isinstance(roots, list) else [])
              for where, key in hidden_by(unit) if below(str(root), where)]
    if not hidden:
        yield Check("proxy view", OK, f"{PROXY_UNIT} hides no allowed root from the proxy")
        return
    root, where, key = hidden[0]
    yield Check("proxy view", FAIL,
                f"{PROXY_UNIT} {key} gives the proxy its own {where}, where allowed root {root} lies: it "
                "would judge bind sources in another tree than the engine mounts them from",
                f"remove {key} from the unit (or its drop-ins), or move [paths] allowed_roots out of {where}")


def unit_settings(deployment: Deployment, path: str) -> list[tuple[str, str]] | None:
    """(key, value) of a unit file and its drop-ins, in the order systemd reads them."""
    files = [deployment.path(path)]
    dropins = deployment.path(path + ".d")
    if os.path.isdir(dropins):
        files += [os.path.join(dropins, name) for name in sorted(os.listdir(dropins))
                  if name.endswith(".conf")]
    pairs: list[tuple[str, str]] = []
    for name in files:
        try:
            with open(name, encoding="utf-8", errors="replace") as unit:
                text = unit.read()
        except OSError:
            if name == files[0]:
                return None
            continue
        for line in text.splitlines():
            key, eq, value = line.strip().partition("=")
            if eq and not key.startswith(("#", ";", "[")):
                pairs.append((key.strip(), value.strip()))
    return pairs


def hidden_by(unit: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(path the proxy does not share with the engine, the unit key that does it)."""
    last = dict(unit)
    hidden: list[tuple[str, str]] = []
    if last.get("PrivateTmp", "").lower() in TRUE_WORDS:
        hidden += [("/tmp", "PrivateTmp"), ("/var/tmp", "PrivateTmp")]  # noqa: S108 - names, not files
    if last.get("ProtectHome", "").lower() in TRUE_WORDS | {"tmpfs"}:
        hidden += [(where, "ProtectHome") for where in ("/home", "/root", "/run/user")]
    if last.get("PrivateDevices", "").lower() in TRUE_WORDS:
        hidden.append(("/dev", "PrivateDevices"))
    for key in ("InaccessiblePaths", "TemporaryFileSystem"):
        for value in (v for k, v in unit if k == key):
            hidden += [(word.lstrip("-+").partition(":")[0], key) for word in value.split()]
    return [(where, key) for where, key in hidden if where.startswith("/")]


def below(path: str, top: str) -> bool:
    """`path` is `top` or inside it (compared with a trailing separator)."""
    top = top.rstrip("/") + "/"
    return (path.rstrip("/") + "/").startswith(top)


def check_socket_answers(deployment: Deployment, settings: dict[str, dict[str, object]]) -> Iterator[Check]:
    if not deployment.live:
        return
    host = str(settings["docker"]["host"])
    if not host.startswith("unix://"):
        yield Check("docker socket", SKIP, f"{host} is not a unix socket")
        return
    import socket

    path = host.removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            probe.connect(path)
        yield Check("docker socket", OK, f"{path} answers")
    except OSError as error:
        yield Check(
            "docker socket",
            FAIL,
            f"cannot connect to {path}: {error.strerror or error}",
            "start the engine and the proxy (systemctl start docker gatekeeper-proxy) or fix docker.host",
        )


def check_disk_usage(deployment: Deployment, settings: dict[str, dict[str, object]]) -> Iterator[Check]:
    """Each profile's images, volumes and build cache (the engine's /system/df), against
    this policy's [limits] disk_budget (gatekeeper.vetting.disk_budget). Asked of the
    engine itself when docker.host is the proxy's socket, which serves only [proxy.users]
    (gatekeeper.operator.engine_host)."""
    from gatekeeper.operator.engine_host import operator_engine_host

    host = operator_engine_host(settings)
    if not deployment.live or not host.startswith("unix://"):
        return
    from gatekeeper.engine_api import EngineError, disk_usage
    from gatekeeper.errors import Denied
    from gatekeeper.units import log_size
    from gatekeeper.vetting.disk_budget import human_size, profile_usage, profiles_in

    try:
        df = disk_usage(host, 60.0)
        usages = {profile: profile_usage(df, profile) for profile in profiles_in(df)}
    except (EngineError, OSError, Denied) as error:
        yield Check("disk usage", SKIP, f"the engine's /system/df at {host} did not answer: {error}")
        return
    budget = str((settings.get("limits") or {}).get("disk_budget") or "")
    limit = log_size(budget) if budget else None
    for profile, usage in sorted(usages.items()):
        figures = f"{human_size(usage.total)} ({usage.breakdown()})"
        if limit is None:
            yield Check(f"disk usage {profile}", OK, f"{figures}; no [limits] disk_budget")
        elif usage.total >= limit:
            yield Check(f"disk usage {profile}", WARN,
                        f"{figures}, at or past the {human_size(limit)} budget: "
                        "its pulls, builds and new volumes are refused",
                        "the agent removes images or volumes; or raise [limits] disk_budget")
        else:
            yield Check(f"disk usage {profile}", OK, f"{figures} of the {human_size(limit)} budget")


def check_sshd(deployment: Deployment) -> Iterator[Check]:
    if not deployment.live:
        return
    try:
        from gatekeeper.operator import sshd_check  # added by issue 19
    except ImportError:
        yield Check(
            "sshd settings", SKIP, "this gatekeeper has no sshd-check; run sshd -T -C user=... by hand"
        )
        return
    try:
        options = sshd_check.parse_args(["--config", deployment.sshd_config, "--user", deployment.agent])
        problems = [
            problem
            for address in sshd_check.DEFAULT_ADDRESSES
            for problem in sshd_check.differences(sshd_check.effective_settings(options, address))
        ]
    except Exception as error:  # noqa: BLE001 - report, never crash the doctor
        yield Check("sshd settings", FAIL, f"sshd -T failed: {error}", "sshd -t; gatekeeper sshd-check")
        return
    if problems:
        yield Check(
            "sshd settings",
            FAIL,
            f"{len(problems)} difference(s), first: {problems[0]}",
            "gatekeeper sshd-check names them all; fix the sshd_config file that overrides the drop-in",
        )
    else:
        yield Check("sshd settings", OK, "sshd -T gives the agent the drop-in's settings")


def check_module_bundle(deployment: Deployment) -> Iterator[Check]:
    """The entry script's module bundle (gatekeeper.module_bundle): current, or every call
    imports its modules one by one (about 1 ms more per call)."""
    if not deployment.live or not os.path.exists(deployment.entry_script):
        return  # not this machine, or no entry script (python3 -I -m gatekeeper reads no bundle)
    import gatekeeper
    from gatekeeper.module_bundle import usable
    from gatekeeper.operator.install_entry import bundle_path

    bundle = bundle_path(deployment.entry_script)
    packages = os.path.dirname(os.path.dirname(os.path.abspath(gatekeeper.__file__)))
    if not os.path.lexists(bundle):
        yield Check("module bundle", WARN, f"none beside {deployment.entry_script} (each call imports "
                    "its modules one by one, about 1 ms more)", "gatekeeper install-entry")
    elif usable(bundle, packages):
        yield Check("module bundle", OK, f"{bundle} is current")
    else:
        yield Check("module bundle", FAIL, f"{bundle} is stale or untrusted (ignored: each call imports "
                    "its modules one by one)", "gatekeeper install-entry")


def root_file_problem(info: os.stat_result | None) -> str:
    """Why a file root runs or trusts is not root's alone ("" when it is)."""
    if info is None:
        return "missing"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_uid != 0 or info.st_mode & 0o022:
        return f"{owner_mode(info)}: someone but root can change it"
    return ""


def check_resident(deployment: Deployment) -> Iterator[Check]:
    """The resident ForceCommand, the drop-in's default (gatekeeper.resident): the unit runs as
    root and the client runs every session, so both are root's alone; live, and when sshd forces
    the client, its pool (check_resident_pool). Forcing the entry script (the fallback) needs none."""
    from gatekeeper.operator.install_entry import resident_path

    client = resident_path(deployment.entry_script)
    forced = forced_program(deployment) if deployment.live else None
    problem = root_file_problem(stat_of(deployment.path(RESIDENT_UNIT)))
    if problem == "missing":
        yield missing_resident_unit(forced, client)
        return
    if problem:
        yield Check("resident unit", FAIL, f"{RESIDENT_UNIT}: {problem}", RESIDENT_FIX)
        return
    yield Check("resident unit", OK, f"{RESIDENT_UNIT} is root's alone")
    if forced != client:
        return  # not live, or the fallback forced: check_sshd judges the line itself
    problem = root_file_problem(stat_of(client))
    if problem:
        yield Check("resident client", FAIL, f"{client}: {problem}", RESIDENT_FIX)
    yield from check_resident_pool(deployment)


def missing_resident_unit(forced: str | None, client: str) -> Check:
    if forced == client:
        return Check("resident unit", FAIL, f"no {RESIDENT_UNIT}, and sshd forces {client}: every call "
                     "is denied", RESIDENT_FIX)
    if forced is not None:
        return Check("resident unit", SKIP, f"none; sshd forces {forced} (the fallback: no pool needed)")
    return Check("resident unit", WARN, f"no {RESIDENT_UNIT}: the drop-in's default ForceCommand, the "
                 "resident client, denies every call without its workers", RESIDENT_FIX)


def forced_program(deployment: Deployment) -> str | None:
    """The program sshd's ForceCommand runs for the agent (sshd -T), None if it cannot say."""
    from gatekeeper.operator import sshd_check

    try:
        options = sshd_check.parse_args(["--config", deployment.sshd_config, "--user", deployment.agent])
        settings = sshd_check.effective_settings(options, sshd_check.DEFAULT_ADDRESSES[0])
    except Exception:  # noqa: BLE001 - check_sshd reports sshd -T's failure
        return None
    forced = settings.get("forcecommand", [])
    words = forced[0].split() if len(forced) == 1 else []
    words = words[1:] if words[:1] == ["exec"] else words
    return words[0] if words else None


def check_resident_pool(deployment: Deployment) -> Iterator[Check]:
    """The pool's socket as gatekeeper.resident.bind_listener makes it: without it (the unit
    stopped or failed) the client denies every call, one line each."""
    from gatekeeper.resident import SOCKET_DIRECTORY, socket_path

    entry = passwd_entry(deployment)
    if entry is None or not entry[2].isdigit() or not entry[3].isdigit():
        return  # check_account says so
    restart = "systemctl enable --now gatekeeper-resident; journalctl -u gatekeeper-resident"
    directory = stat_of(deployment.path(SOCKET_DIRECTORY))
    if directory is not None and (not stat.S_ISDIR(directory.st_mode) or directory.st_uid != 0
                                  or directory.st_mode & 0o022):
        yield Check("resident pool", FAIL,
                    f"{SOCKET_DIRECTORY}: {owner_mode(directory)}, not a root:root 0755 directory",
                    f"systemctl stop gatekeeper-resident; rm -r {SOCKET_DIRECTORY}; {restart}")
        return
    path = socket_path(int(entry[2]))
    info = stat_of(deployment.path(path))
    if info is None or not stat.S_ISSOCK(info.st_mode):
        yield Check("resident pool", FAIL, f"no socket {path}: the pool is not running, every call is "
                    "denied", restart)
    elif (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (0, int(entry[3]), 0o660):
        yield Check("resident pool", FAIL, f"{path}: {owner_mode(info)}, not root:<{deployment.agent}'s "
                    "group> 0660", "systemctl restart gatekeeper-resident (it makes the socket so)")
    else:
        yield Check("resident pool", OK, f"{path} is there, root:<{deployment.agent}'s group> 0660")


def check_names(settings: dict[str, dict[str, object]]) -> Iterator[Check]:
    """[names] prefix (gatekeeper.name_prefix): off only when the operator said so."""
    prefix = str((settings.get("names") or {}).get("prefix", ""))
    if prefix:
        yield Check("names", OK, f"names the agent gives start with {prefix!r}")
    else:
        from gatekeeper.operator.lint import NAMES_OFF

        yield Check("names", WARN, f'[names] prefix = "": {NAMES_OFF}',
                    'set [names] prefix = "ai-" (or remove the key: "ai-" is the default)')


def diagnose(deployment: Deployment) -> list[Check]:
    checks = list(check_policy(deployment))
    settings = load_settings(deployment)
    if settings is None:
        from gatekeeper.policy import DEFAULTS

        settings = DEFAULTS
    checks += check_config_dir(deployment, settings)
    checks += check_docker_binary(deployment, settings)
    checks += check_state_dir(deployment, settings)
    checks += check_names(settings)
    checks += check_area_mounts(deployment, settings)
    checks += check_audit_log(deployment, settings)
    checks += check_keys_file(deployment)
    checks += check_account(deployment)
    checks += check_pam(deployment)
    checks += check_engine_access(deployment, settings)
    checks += check_proxy_view(deployment, settings)
    checks += check_disk_usage(deployment, settings)
    checks += check_module_bundle(deployment)
    checks += check_resident(deployment)
    checks += check_sshd(deployment)
    return checks


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gatekeeper doctor",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", default="/", help="check the deployment below this directory")
    parser.add_argument(
        "--policy", default=DEFAULT_POLICY, help=f"deployed policy (default {DEFAULT_POLICY})"
    )
    parser.add_argument("--agent", default=DEFAULT_AGENT, help=f"agent account (default {DEFAULT_AGENT})")
    parser.add_argument("--sshd-config", default="/etc/ssh/sshd_config", help="main sshd_config for sshd -T")
    parser.add_argument("--json", action="store_true", help="one JSON object: {ok, checks: [...]}")
    options = parser.parse_args(argv)
    deployment = Deployment(
        options.root, options.policy, options.agent, live=options.root == "/", sshd_config=options.sshd_config
    )
    checks = diagnose(deployment)
    failed = any(check.status == FAIL for check in checks)
    if options.json:
        sys.stdout.write(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}) + "\n")
    else:
        for check in checks:
            sys.stdout.write(check.line() + "\n")
        verdict = "FAILED: fix the lines marked FAIL" if failed else "ok"
        sys.stdout.write(f"doctor: {verdict}\n")
    return 1 if failed else 0
