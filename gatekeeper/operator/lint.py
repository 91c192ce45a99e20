"""`gatekeeper policy check`: a linter, not just a parser.

Every finding names the file, the line, the bad value and what to do instead,
and all of them are reported at once (a parser stops at the first).

Errors (exit 78): what the policy loader refuses, and what loads but weakens
the confinement: an allowed root at or above /, /etc, /root, /home, the
docker data root or another system directory; a policy file others can write
or in a directory others can write; a docker config_dir not owned by root or
writable by others; a docker binary that does not exist.
Warnings (exit 0): what can never pass or never apply: an allowed command with
no vetted grammar, a command both allowed and blocked, an audit log directory
that does not exist, [limits] that can never apply or that the engine refuses
(a default over its own cap, memory under docker's 6 MiB, CPUs under 0.01 or
above this machine's count, log_max_file without log_max_size, health floors
under docker's 1 ms).
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from gatekeeper import policy as policy_module
from gatekeeper.errors import PolicyError
from gatekeeper.grammar.names import canonical_name
from gatekeeper.units import go_duration, ram_in_bytes

ERROR: Final = "error"
WARNING: Final = "warning"

# Directories no allowed root may be at or above (a root above one of them
# lets a container bind it), nor inside.
SYSTEM_DIRS: Final = ("/etc", "/root", "/home", "/boot", "/usr", "/bin", "/sbin", "/lib", "/var",
                      "/proc", "/sys", "/dev", "/run")  # fmt: skip
DOCKER_DATA_ROOT: Final = "/var/lib/docker"
DAEMON_JSON: Final = "/etc/docker/daemon.json"
NOT_INSIDE: Final = ("/etc", "/root", "/boot", "/proc", "/sys", "/dev", "/run")


@dataclass(frozen=True)
class Finding:
    level: str
    file: str
    line: int  # 0: the file as a whole
    what: str  # "paths.allowed_roots", "file mode", ...
    value: str
    problem: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        value = f" {self.value}" if self.value else ""
        return f"{where}: {self.level}: {self.what}{value}: {self.problem}; {self.fix}"


@dataclass(frozen=True)
class Context:
    """What the linter looks at besides the text (replaced in tests)."""

    stat: Callable[[str], os.stat_result] = os.stat
    docker_data_root: str | None = None  # None: from daemon.json, else /var/lib/docker
    cpu_count: Callable[[], int | None] = lambda: len(os.sched_getaffinity(0))  # Go's NumCPU, as dockerd


def lint(path: str, context: Context | None = None) -> list[Finding]:
    """Every finding for the policy file at ``path``, errors first, in file order."""
    context = context or Context()
    findings: list[Finding] = []
    try:
        data = open(path, "rb").read()  # noqa: SIM115 - read once, closed by refcount
    except OSError as error:
        return [
            Finding(
                ERROR,
                path,
                0,
                "file",
                "",
                f"cannot read it ({error.strerror})",
                "check the path; the deployed policy is /etc/gatekeeper/policy.toml",
            )
        ]
    text = data.decode("utf-8", "replace")
    findings.extend(file_findings(path, context))
    parsed = parse(path, data, findings)
    if parsed is not None:
        locate = Locator(path, text)
        findings.extend(schema_findings(parsed, locate))
        settings = merged_settings(parsed)
        findings.extend(root_findings(settings, locate, context))
        findings.extend(docker_findings(settings, locate, context))
        findings.extend(command_findings(parsed, locate))
        findings.extend(audit_findings(settings, locate, context))
        findings.extend(limit_findings(settings["limits"], locate, context))
        findings.extend(names_findings(settings, locate))
    return sorted(findings, key=lambda f: (f.level != ERROR, f.line))


def parse(path: str, data: bytes, findings: list[Finding]) -> dict[str, object] | None:
    import tomllib

    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        findings.append(
            Finding(ERROR, path, 0, "encoding", "", f"not UTF-8 ({error.reason})", "save the file as UTF-8")
        )
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"at line (\d+)", str(error))
        findings.append(
            Finding(
                ERROR,
                path,
                int(match.group(1)) if match else 0,
                "TOML",
                "",
                str(error),
                "fix the syntax (see examples/default.toml)",
            )
        )
    return None


# ---------------------------------------------------------------- where in the file


class Locator:
    """Line numbers of sections, keys and values in the file's text (1-based; 0 if not found)."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line(self, section: str, key: str | None = None, value: str | None = None) -> int:
        current = None
        key_line = 0
        for number, raw in enumerate(self.lines, 1):
            stripped = raw.strip()
            header = re.fullmatch(r"\[\s*([^\]]+?)\s*\]\s*(#.*)?", stripped)
            if header:
                if key_line:
                    break  # the key's value ended with its section
                current = header.group(1)
                if key is None and current == section:
                    return number
                continue
            if current != section or key is None:
                continue
            if not key_line and re.match(rf"{re.escape(key)}\s*=", stripped):
                key_line = number
                if value is None:
                    return number
            if key_line and value is not None and (f'"{value}"' in raw or f"'{value}'" in raw):
                return number
            if key_line and number > key_line and re.match(r"[A-Za-z_][\w-]*\s*=", stripped):
                break
        return key_line


# ---------------------------------------------------------------- the file itself


def file_findings(path: str, context: Context) -> Iterator[Finding]:
    try:
        info = context.stat(path)
    except OSError:
        return
    if info.st_mode & stat.S_IWOTH:
        yield Finding(
            ERROR,
            path,
            0,
            "file mode",
            f"{stat.S_IMODE(info.st_mode):04o}",
            "anyone can rewrite the policy the ForceCommand obeys",
            f"chmod 0644 {path} (owner root)",
        )
    elif info.st_mode & stat.S_IWGRP and info.st_gid != 0:
        yield Finding(
            ERROR,
            path,
            0,
            "file mode",
            f"{stat.S_IMODE(info.st_mode):04o} group {info.st_gid}",
            "a non-root group can rewrite the policy",
            f"chmod g-w {path}",
        )
    if info.st_uid != 0:
        yield Finding(
            WARNING,
            path,
            0,
            "owner",
            f"uid {info.st_uid}",
            "a deployed policy must be owned by root (fine for a draft)",
            f"chown root:root {path}",
        )
    directory = posixpath.dirname(posixpath.abspath(path))
    while True:
        try:
            parent = context.stat(directory)
        except OSError:
            break
        sticky_root = parent.st_mode & stat.S_ISVTX and info.st_uid == 0
        if parent.st_mode & stat.S_IWOTH and not sticky_root:
            yield Finding(
                ERROR,
                path,
                0,
                "directory",
                directory,
                "others can write this directory, so they can replace the policy file",
                f"keep the policy in a root-owned directory such as /etc/gatekeeper (chmod o-w {directory})",
            )
        if directory == "/":
            break
        directory = posixpath.dirname(directory)


# ---------------------------------------------------------------- keys and types


def schema_findings(parsed: dict[str, object], locate: Locator) -> Iterator[Finding]:
    schema = policy_module.SCHEMA
    for section, values in parsed.items():
        if section not in schema:
            yield Finding(
                ERROR,
                locate.path,
                locate.line(section),
                f"[{section}]",
                "",
                "unknown section",
                did_you_mean(section, list(schema), "remove it"),
            )
            continue
        if not isinstance(values, dict):
            yield Finding(
                ERROR,
                locate.path,
                locate.line(section),
                section,
                "",
                "must be a table",
                f"write [{section}] and its keys below it",
            )
            continue
        for key, value in values.items():
            kind = schema[section].get(key)
            line = locate.line(section, key)
            if kind is None:
                yield Finding(
                    ERROR,
                    locate.path,
                    line,
                    f"{section}.{key}",
                    "",
                    "unknown key",
                    did_you_mean(
                        key, list(schema[section]), f"keys of [{section}]: " + ", ".join(schema[section])
                    ),
                )
            elif not policy_module.VALIDATORS[kind](value):
                yield Finding(
                    ERROR,
                    locate.path,
                    line,
                    f"{section}.{key}",
                    shown(value),
                    f"must be a {kind}",
                    "see examples/default.toml",
                )


def did_you_mean(word: str, choices: list[str], otherwise: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else otherwise


def shown(value: object) -> str:
    import json

    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def merged_settings(parsed: dict[str, object]) -> dict[str, dict[str, object]]:
    """Defaults with the file's well-typed keys on top (the rest is reported by schema_findings)."""
    settings = {section: dict(values) for section, values in policy_module.DEFAULTS.items()}
    for section, values in parsed.items():
        if section not in settings or not isinstance(values, dict):
            continue
        for key, value in values.items():
            kind = policy_module.SCHEMA[section].get(key)
            if kind is not None and policy_module.VALIDATORS[kind](value):
                settings[section][key] = value
    return settings


# ---------------------------------------------------------------- confinement


def data_root(context: Context) -> str:
    if context.docker_data_root is not None:
        return context.docker_data_root
    try:
        import json

        with open(DAEMON_JSON, encoding="utf-8") as handle:
            configured = json.load(handle).get("data-root")
        if isinstance(configured, str) and configured.startswith("/"):
            return posixpath.normpath(configured)
    except (OSError, ValueError, AttributeError):
        pass
    return DOCKER_DATA_ROOT


def is_at_or_above(root: str, target: str) -> bool:
    return root in ("/", target) or target.startswith(root.rstrip("/") + "/")


def root_findings(
    settings: dict[str, dict[str, object]], locate: Locator, context: Context
) -> Iterator[Finding]:
    roots = settings["paths"]["allowed_roots"]
    if not isinstance(roots, list):
        return
    docker_root = data_root(context)
    for raw in roots:
        if not isinstance(raw, str) or not raw.startswith("/"):
            continue
        root = posixpath.normpath(raw)
        line = locate.line("paths", "allowed_roots", raw)
        covered = [d for d in (*SYSTEM_DIRS, docker_root) if is_at_or_above(root, d)]
        inside = [d for d in (*NOT_INSIDE, docker_root) if root.startswith(d + "/")]
        if covered:
            yield Finding(
                ERROR,
                locate.path,
                line,
                "paths.allowed_roots",
                f'"{raw}"',
                f"a root at or above {', '.join(covered[:3])}{', ...' if len(covered) > 3 else ''} "
                "lets containers bind it",
                'use a dedicated directory such as "/srv/agent" or "/home/ai-worker"',
            )
        elif inside:
            yield Finding(
                ERROR,
                locate.path,
                line,
                "paths.allowed_roots",
                f'"{raw}"',
                f"a root inside {inside[0]} hands system or engine state to containers",
                'use a dedicated directory such as "/srv/agent"',
            )
    state_dir = settings["paths"]["state_dir"]
    try:
        policy_module.check_state_dir(
            posixpath.normpath(str(state_dir)),
            tuple(posixpath.normpath(r) for r in roots if isinstance(r, str)),
            locate.path,
        )
    except PolicyError as error:
        problem, _, fix = error.message.partition("; ")
        problem = problem[problem.find("is reachable") :] if "is reachable" in problem else problem
        yield Finding(
            ERROR,
            locate.path,
            locate.line("paths", "state_dir"),
            "paths.state_dir",
            f'"{state_dir}"',
            problem,
            fix or "move it outside the roots",
        )


def docker_findings(
    settings: dict[str, dict[str, object]], locate: Locator, context: Context
) -> Iterator[Finding]:
    docker = settings["docker"]
    binary = str(docker["binary"])
    try:
        info = context.stat(binary)
        if not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o111:
            raise FileNotFoundError
    except OSError:
        yield Finding(
            ERROR,
            locate.path,
            locate.line("docker", "binary"),
            "docker.binary",
            f'"{binary}"',
            "no executable there: every allowed command would fail",
            "install docker (apt install docker.io) or set the path `command -v docker` prints",
        )
    config_dir = str(docker["config_dir"])
    line = locate.line("docker", "config_dir")
    try:
        info = context.stat(config_dir)
    except OSError:
        yield Finding(
            WARNING,
            locate.path,
            line,
            "docker.config_dir",
            f'"{config_dir}"',
            "does not exist (the docker CLI would use defaults)",
            f"install -d -o root -g root -m 0755 {config_dir}",
        )
        return
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        yield Finding(
            ERROR,
            locate.path,
            line,
            "docker.config_dir",
            f'"{config_dir}"',
            f"owned by uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):04o}: its owner can "
            "plant CLI plugins and contexts that the ForceCommand's docker runs",
            f"chown root:root {config_dir} && chmod 0755 {config_dir}",
        )


def command_findings(parsed: dict[str, object], locate: Locator) -> Iterator[Finding]:
    from gatekeeper.grammar import names

    commands = parsed.get("commands")
    if not isinstance(commands, dict):
        return
    blocked_names = commands.get("blocked", policy_module.DEFAULTS["commands"]["blocked"])
    blocked = (
        {canonical_name(n) for n in blocked_names} if isinstance(blocked_names, list) else set()
    )
    for key in ("allowed", "blocked"):
        listed = commands.get(key)
        if not isinstance(listed, list):
            continue
        for name in listed:
            if not isinstance(name, str):
                continue
            canonical = canonical_name(name)
            line = locate.line("commands", key, name)
            if canonical is None:
                choices = names_list()
                yield Finding(
                    ERROR,
                    locate.path,
                    line,
                    f"commands.{key}",
                    f'"{name}"',
                    "no such docker command",
                    did_you_mean(name, choices, "see 'docker --help'"),
                )
            elif key == "allowed" and canonical in blocked:
                yield Finding(
                    WARNING,
                    locate.path,
                    line,
                    "commands.allowed",
                    f'"{name}"',
                    "also blocked: it never applies (blocked wins)",
                    "remove it from one of the lists",
                )
            elif key == "allowed" and names.flag_table(canonical) is None:
                yield Finding(
                    WARNING,
                    locate.path,
                    line,
                    "commands.allowed",
                    f'"{name}"',
                    f"gatekeeper has no vetted grammar for 'docker {canonical}', so it can never pass "
                    "(denials would still list it as allowed)",
                    "remove it",
                )


def names_list() -> list[str]:
    from gatekeeper.grammar import commands

    return sorted({*commands.DISPLAY, *commands.DISPLAY.values()})


def audit_findings(
    settings: dict[str, dict[str, object]], locate: Locator, context: Context
) -> Iterator[Finding]:
    path = str(settings["audit"]["path"])
    directory = posixpath.dirname(path)
    try:
        context.stat(directory)
    except OSError:
        yield Finding(
            WARNING,
            locate.path,
            locate.line("audit", "path"),
            "audit.path",
            f'"{path}"',
            f"{directory} does not exist: every command would fail with exit 75",
            f"install -d -o root -g root -m 0755 {directory} (then 'gatekeeper doctor')",
        )
    yield from flood_findings(settings, locate)


def flood_findings(settings: dict[str, dict[str, object]], locate: Locator) -> Iterator[Finding]:
    """What bounds the log under a flood of requests (docs/audit.md#log-volume), switched off."""
    if settings["proxy"].get("request_rate") == 0:
        yield Finding(WARNING, locate.path, locate.line("proxy", "request_rate"), "proxy.request_rate", "0",
                      "no request budget: a shell as the agent looping requests on the proxy's socket writes "
                      "a record per request, as fast as the proxy answers",
                      "set a rate (the default, 20 a second, when the key is absent)")
    if settings["audit"].get("via_proxy") and settings["audit"].get("max_bytes") == 0:
        yield Finding(WARNING, locate.path, locate.line("audit", "max_bytes"), "audit.max_bytes", "0",
                      "no ceiling on the live log: a flood the proxy records can fill its file system",
                      "set a ceiling (the default when the key is absent) and keep the log on a file "
                      "system of its own")
    yield from share_findings(settings, locate)


def share_findings(settings: dict[str, dict[str, object]], locate: Locator) -> Iterator[Finding]:
    """[audit] max_bytes_per_uid off, or no smaller than the ceiling: one account's flood fills the
    whole live log and every account is refused (audit-full) until it is rotated."""
    audit = settings["audit"]
    share, ceiling = audit.get("max_bytes_per_uid"), audit.get("max_bytes")
    if not (audit.get("via_proxy") and isinstance(share, int) and isinstance(ceiling, int) and ceiling):
        return
    if share == 0 or share >= ceiling:
        what = "no share" if share == 0 else "a share no smaller than max_bytes"
        yield Finding(WARNING, locate.path, locate.line("audit", "max_bytes_per_uid"),
                      "audit.max_bytes_per_uid", str(share),
                      f"{what}: one account's flood fills the live log up to [audit] max_bytes and every "
                      "account is refused (audit-full) until it is rotated",
                      "set a share below max_bytes (the default, 500000000, when the key is absent)")


# ---------------------------------------------------------------- [limits] that never apply

ENGINE_MIN_MEMORY: Final = 6 * 1024 * 1024  # dockerd: "Minimum memory limit allowed is 6MB"
ENGINE_MIN_NANO_CPUS: Final = 10**7  # dockerd: "Range of CPUs is from 0.01 to N"
ENGINE_MIN_HEALTH: Final = 10**6  # dockerd: health intervals "cannot be less than 1ms"


def names_findings(settings: dict[str, dict[str, object]], locate: Locator) -> Iterator[Finding]:
    """[names] prefix = "" switches off the name rule (gatekeeper.name_prefix): said, not an error."""
    if settings.get("names", {}).get("prefix") == "":
        yield Finding(WARNING, locate.path, locate.line("names", "prefix"), "names.prefix", '""',
                      NAMES_OFF, 'set a prefix such as "ai-" (the default when the key is absent)')


NAMES_OFF: Final = ("the name rule is off: a volume, network, image tag, compose project or container name "
                    "the agent takes first is the operator's later object (the operator's data in the "
                    "agent's volume, the agent's image run under the operator's tag)")


def limit_findings(limits: dict[str, object], locate: Locator, context: Context) -> Iterator[Finding]:
    def warn(key: str, problem: str, fix: str) -> Finding:
        line = locate.line("limits", key)
        return Finding(WARNING, locate.path, line, f"limits.{key}", shown(limits[key]), problem, fix)

    yield from over_own_cap(limits, warn)
    yield from under_engine_minimum(limits, warn)
    yield from over_machine(limits, warn, context.cpu_count())
    if limits.get("log_max_file") and not limits.get("log_max_size"):
        yield warn("log_max_file", "never applies: without log_max_size a log never rotates",
                   'set log_max_size too (e.g. "10m")')
    for key in ("min_health_interval", "min_health_start_interval", "min_health_timeout",
                "min_health_start_period"):
        floor = go_duration(str(limits.get(key) or "0s")) or 0
        if 0 < floor < ENGINE_MIN_HEALTH:
            yield warn(key, "never applies: the engine refuses anything under 1ms anyway", 'use e.g. "1s"')


def memory_bytes(value: object) -> int:
    return ram_in_bytes(str(value or "0")) or 0


def cpu_nanos(value: object) -> int:
    return round(float(str(value or 0)) * 10**9)


def pids_count(value: object) -> int:
    return int(str(value or 0))


# (default key, cap key, how a value is measured, the rule a refusal carries)
DEFAULT_CAPS: Final = (
    ("default_memory", "memory", memory_bytes, "limit-memory"),
    ("default_cpus", "cpus", cpu_nanos, "limit-cpus"),
    ("default_pids_limit", "pids_limit", pids_count, "limit-pids"),
)


def over_own_cap(limits: dict[str, object], warn: Callable[[str, str, str], Finding]) -> Iterator[Finding]:
    for default, cap, measure, rule in DEFAULT_CAPS:
        if measure(limits.get(cap)) and measure(limits.get(default)) > measure(limits.get(cap)):
            flag = "--" + cap.replace("_limit", "").replace("pids", "pids-limit")
            yield warn(default, f"over its own cap {cap} = {shown(limits[cap])}: every run/create without "
                       f"{flag} is refused ({rule})", f"lower {default} to at most {shown(limits[cap])}")


def under_engine_minimum(
    limits: dict[str, object], warn: Callable[[str, str, str], Finding]
) -> Iterator[Finding]:
    for key in ("memory", "default_memory"):
        if 0 < memory_bytes(limits.get(key)) < ENGINE_MIN_MEMORY:
            yield warn(key, f"{engine_refuses(key)}: docker's minimum memory is 6 MiB", 'use at least "6m"')
    for key in ("cpus", "default_cpus"):
        if 0 < cpu_nanos(limits.get(key)) < ENGINE_MIN_NANO_CPUS:
            yield warn(key, f"{engine_refuses(key)}: docker's minimum is 0.01 CPUs", "use at least 0.01")


def engine_refuses(key: str) -> str:
    if key.startswith("default_"):
        return "the engine refuses every container it is injected into"
    return "no value within this cap is one the engine accepts"


def over_machine(
    limits: dict[str, object], warn: Callable[[str, str, str], Finding], cpus: int | None
) -> Iterator[Finding]:
    if not cpus:
        return
    if cpu_nanos(limits.get("default_cpus")) > cpus * 10**9:
        yield warn("default_cpus", f"this machine has {cpus} CPUs: the engine refuses every container it "
                   "is injected into", f"use at most {cpus}")
    if cpu_nanos(limits.get("cpus")) > cpus * 10**9:
        yield warn("cpus", f"never applies on this machine ({cpus} CPUs): the engine refuses more anyway",
                   f"use at most {cpus}, or 0 for no cap")
