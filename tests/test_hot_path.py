"""The ForceCommand hot path stays lean, and its shortcuts change nothing.

* An allowed `docker ps` imports none of the heavy modules (the compiled
  policy replaces tomllib; our encoder replaces json; our digest replaces
  hashlib; `_signal` replaces signal).
* The audit encoder is byte for byte `json.dumps` (property test).
* The key fingerprint without base64/hashlib equals the one with them.
* A compiled policy is used only when it is as trustworthy as the TOML and was
  made from the TOML's current bytes; "trying to cheat" cases fall back to the
  TOML, and its contents go through the same validation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import marshal
import os
import posixpath
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gatekeeper.audit import encode
from gatekeeper.environment import getenv
from gatekeeper.errors import PolicyError
from gatekeeper.paths import normpath
from gatekeeper.policy import COMPILED_SUFFIX, compile_policy, load_policy
from gatekeeper.session import fingerprint_of_blob
from tests.conftest import REPO, Deployment

# Each costs milliseconds at import; none is needed to decide and run `docker ps`.
HEAVY_MODULES = (
    "rich", "argparse", "json", "tomllib", "subprocess", "typing", "dataclasses",
    "hashlib", "_hashlib", "re", "enum", "signal", "base64", "datetime", "bashlex",
)  # fmt: skip

# Runs gatekeeper without site (so no editable-install finder muddies the
# picture) from the repository, and prints the modules it imported.
IMPORT_PROBE = """
import sys
sys.path.insert(0, {repo!r})
before = set(sys.modules)
import gatekeeper.cli
code = gatekeeper.cli.main(["--policy", {policy!r}])
sys.stdout.write("\\n".join(sorted(set(sys.modules) - before)))
sys.exit(code)
"""


def imported_modules(deployment: Deployment, command: str) -> tuple[int, set[str]]:
    done = probe(deployment, command)
    return done.returncode, set(done.stdout.split())


def probe(deployment: Deployment, command: str) -> subprocess.CompletedProcess[str]:
    auth_info = deployment.root / "auth-info"
    auth_info.write_text("publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDXk7wbgq8S0Sl9NeUqXJqSRiowW5kpq\n")
    env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": command, "SSH_USER_AUTH": str(auth_info),
           "SSH_CONNECTION": "127.0.0.1 40000 127.0.0.1 22"}
    probe = IMPORT_PROBE.format(repo=str(REPO), policy=str(deployment.policy))
    done = subprocess.run([sys.executable, "-S", "-E", "-s", "-c", probe], env=env, cwd="/",
                          capture_output=True, text=True, timeout=30, check=False)
    return done


def heavy(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in HEAVY_MODULES}


def test_allowed_docker_ps_imports_no_heavy_module(deployment: Deployment) -> None:
    compile_policy(str(deployment.policy))
    status, modules = imported_modules(deployment, "docker ps -a --format '{{.Names}}'")
    assert status == 0
    assert "gatekeeper.execution" in modules  # it did run the command
    assert heavy(modules) == set()
    assert "encodings.ascii" not in modules  # the key's file is read as bytes: a text file imports its codec
    records = [json.loads(line) for line in deployment.audit_lines()]
    assert [r["event"] for r in records] == ["decision", "exit"]
    assert records[0]["key"].startswith("SHA256:")


def test_denied_command_imports_no_heavy_module(deployment: Deployment) -> None:
    compile_policy(str(deployment.policy))
    status, modules = imported_modules(deployment, "docker exec web sh")
    assert status == 77
    assert heavy(modules) == set()


def test_plain_commands_do_not_import_os(deployment: Deployment) -> None:
    """`import os` is ~0.9 ms of every call (os.environ, _collections_abc, posixpath): the
    hot path takes its system calls from `posix` (gatekeeper.environment). Control: a
    command with a host path imports it (posixpath, to resolve the path)."""
    compile_policy(str(deployment.policy))
    for command, expected in (("docker ps -a", 0), ("docker exec web sh", 77)):
        status, modules = imported_modules(deployment, command)
        assert status == expected, command
        assert "gatekeeper.environment" in modules, command
        assert {"os", "posixpath", "_collections_abc", "stat", "math"} & modules == set(), command
    _, modules = imported_modules(deployment, "docker run --rm -v ./data:/data busybox true")
    assert "os" in modules


def test_the_policys_stat_constants_are_stats() -> None:
    """gatekeeper.policy spells out the few stat constants it needs (no stat import)."""
    from gatekeeper.policy import S_IFMT, S_IFREG, S_IWGRP, S_IWOTH

    assert (S_IFMT, S_IFREG, S_IWGRP, S_IWOTH) == (0o170000, stat.S_IFREG, stat.S_IWGRP, stat.S_IWOTH)
    assert all(stat.S_ISREG(mode) == (mode & S_IFMT == S_IFREG) for mode in range(0o200000))


@given(st.text(alphabet=st.sampled_from("/.a")))
@example("//a/../b")
@example("///a")
@example("../a/./..")
@example("a/../..")
@example("")
def test_normpath_equals_posixpath(path: str) -> None:
    assert normpath(path) == posixpath.normpath(path)


@given(st.text(alphabet=st.sampled_from("AB_=é\udcff")), st.text(alphabet=st.sampled_from("ab =é\udcff")))
def test_getenv_equals_os_environ(name: str, value: str) -> None:
    """gatekeeper.environment.getenv reads what os.environ holds, set through os too."""
    if not name or "=" in name:
        return  # not a variable's name
    key = "GK_TEST_" + name
    os.environ[key] = value
    try:
        assert getenv(key) == os.environ.get(key) == value
    finally:
        del os.environ[key]
    assert getenv(key) is None


def test_forcecommand_imports_no_operator_command(deployment: Deployment) -> None:
    """Operator commands (gatekeeper.operator, its views with rich) never load for the agent,
    allowed or denied. Control: the same probe sees the package when it runs one."""
    compile_policy(str(deployment.policy))
    for command, expected in (("docker ps -a", 0), ("docker exec web sh", 77)):
        status, modules = imported_modules(deployment, command)
        assert status == expected, command
        assert {name for name in modules if name.startswith("gatekeeper.operator")} == set(), command
    assert {"gatekeeper.operator", "gatekeeper.operator.rules_cmd"} <= operator_modules_after(["rules"])


def operator_modules_after(argv: list[str]) -> set[str]:
    probe = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import gatekeeper.cli, io, contextlib\n"
             f"with contextlib.redirect_stdout(io.StringIO()): gatekeeper.cli.main({argv!r})\n"
             "print(' '.join(m for m in sys.modules if m.startswith('gatekeeper.operator')))")
    done = subprocess.run([sys.executable, "-S", "-E", "-s", "-c", probe], env={"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30, check=False)
    return set(done.stdout.split())


def test_only_inspect_templates_import_the_engine_stand_in(deployment: Deployment) -> None:
    """The stand-in (http.server, threads) costs only the commands that need it: an inspect
    template. Control: a template does import it, so its absence elsewhere means something."""
    compile_policy(str(deployment.policy))
    for command in ("docker ps", "docker inspect web", "docker ps --format '{{.Names}}'"):
        _, modules = imported_modules(deployment, command)
        assert "gatekeeper.execution" in modules, command
        assert heavy(modules) == set(), command  # inspect's redaction reads JSON without json
        assert {name.split(".")[0] for name in modules} & {"http", "socketserver"} == set(), command
        assert "gatekeeper.redacting_engine" not in modules, command
    _, modules = imported_modules(deployment, "docker inspect -f '{{.Name}}' web")
    assert "gatekeeper.redacting_engine" in modules and "http.server" in modules


def test_everyday_run_flags_import_no_heavy_module(deployment: Deployment) -> None:
    """`run --network NAME` (the CLI's long-syntax test was a regexp: `re` and `enum`, ~6 ms)
    and a plain `run --rm` import nothing heavy. Control: the long syntax itself still
    parses (it is refused for its own reason, not for a missing module)."""
    compile_policy(str(deployment.policy))
    for command in ("docker run --rm --network mynet busybox true", "docker run --rm busybox true",
                    "docker run --rm --network none busybox true"):
        _, modules = imported_modules(deployment, command)
        assert "gatekeeper.vetting.run" in modules, command
        assert heavy(modules) == set(), command
    status, _ = imported_modules(deployment, "docker run --rm --network name=host busybox true")
    assert status == 77


@given(st.text(alphabet=st.sampled_from("a_Z09=,.:-é ")))
@example("a=b")
@example("=b")
@example("a=")
@example("é=b")
def test_network_long_syntax_test_equals_the_clis_regexp(value: str) -> None:
    import re

    from gatekeeper.vetting.flag_checks import is_network_long_syntax

    assert is_network_long_syntax(value) == (re.search(r"\w+=\w+", value, re.ASCII) is not None)


def regexp_go_duration(text: str) -> int | None:
    """gatekeeper.units.go_duration as it was written with `re` (the reference)."""
    import re

    from gatekeeper.units import GO_DURATION_UNITS

    if text == "0":
        return 0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)([a-z\u00b5\u03bc]+)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    total = 0
    for number, unit in parts:
        scale = GO_DURATION_UNITS.get(unit)
        if scale is None:
            return None
        whole, _, fraction = number.partition(".")
        total += int(whole or "0") * scale + (int(fraction) * scale // 10 ** len(fraction) if fraction else 0)
    return total


@given(st.text(alphabet=st.sampled_from("0123456789.smhnuµμdx -+")))
@example("1m30.5s")
@example("1.s")
@example(".s")
@example("1..5s")
@example("1.5")
@example("0s")
@example("00")
def test_go_duration_by_hand_equals_the_regexp(text: str) -> None:
    from gatekeeper.units import go_duration

    assert go_duration(text) == regexp_go_duration(text)


@given(st.text())
def test_go_duration_refuses_what_go_does_not_read(text: str) -> None:
    """The one difference: `\\d` also matched non-ASCII digits (U+0661 then "s"), which Go's parser
    refuses; by hand they are refused too (None), everything else reads the same."""
    from gatekeeper.units import go_duration

    expected = regexp_go_duration(text)
    if any(char.isdigit() and not char.isascii() for char in text):
        assert go_duration(text) is None
    else:
        assert go_duration(text) == expected


def ipaddress_normal_address(text: str) -> str:
    """gatekeeper.vetting.ports.normal_address as it was, ipaddress for every spelling."""
    from ipaddress import ip_address

    if "%" in text:
        raise ValueError(text)
    address = ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def outcome(read: Callable[[str], str], text: str) -> str | None:
    try:
        return read(text)
    except ValueError:
        return None


@given(st.one_of(st.text(alphabet=st.sampled_from("0123456789.:af%")),
                 st.lists(st.integers(0, 300).map(str), min_size=3, max_size=5).map(".".join)))
@example("127.0.0.1")
@example("127.0.0.01")
@example("::1")
@example("::")
@example("::ffff:127.0.0.1")
@example("0.0.0.0")  # noqa: S104  # a spelling, nothing binds
@example("256.0.0.1")
@example("1.2.3.4.")
@example("\u0661.1.1.1")
def test_normal_address_fast_path_equals_ipaddress(text: str) -> None:
    from gatekeeper.vetting.ports import normal_address

    assert outcome(normal_address, text) == outcome(ipaddress_normal_address, text)


def test_publishing_on_loopback_imports_no_ipaddress(deployment: Deployment) -> None:
    """`-p` checks the host address against the policy's list ("127.0.0.1", "::1" by
    default) without ipaddress (refused later by the absent engine's image question).
    Control: an address spelled otherwise is still read by ipaddress, and one off the
    list refused for it."""
    compile_policy(str(deployment.policy))
    for command in ("docker run --rm -p 127.0.0.1:8080:80 busybox true",
                    "docker run --rm -p '[::1]:8080:80' busybox true"):
        done = probe(deployment, command)
        assert "cannot resolve image" in done.stderr, command
        assert "gatekeeper.vetting.ports" in done.stdout.split(), command
        assert "ipaddress" not in done.stdout.split(), command
    _, modules = imported_modules(deployment, "docker run --rm -p '[0:0::1]:8080:80' busybox true")
    assert "ipaddress" in modules
    refused = probe(deployment, "docker run --rm -p 10.1.2.3:8080:80 busybox true")
    assert "allowed host addresses" in refused.stderr


# Loaded only by the commands that use them: the value-language flag checks and the bind
# rules (gatekeeper.vetting.flag_check, vet_host_path_invariant), the session cap, and the
# in-flight registry (worlds.RealWorld opens it when first asked).
SPECIFIC_MODULES = frozenset({
    "gatekeeper.vetting.flag_checks", "gatekeeper.vetting.binds", "gatekeeper.vetting.sessions",
    "gatekeeper.inflight",
})  # fmt: skip


def test_plain_commands_load_no_check_they_do_not_use(deployment: Deployment) -> None:
    """ps, logs and inspect have no host path and no value-language flag. Control: a run
    with a bind loads the checks (and the registry), so their absence means something."""
    compile_policy(str(deployment.policy))
    for command in ("docker ps -a", "docker logs web", "docker inspect web"):
        _, modules = imported_modules(deployment, command)
        assert "gatekeeper.vetting" in modules, command
        assert modules & SPECIFIC_MODULES == set(), command
    _, modules = imported_modules(deployment, f"docker run --rm -v {deployment.workdir}/work:/w busybox true")
    assert SPECIFIC_MODULES - {"gatekeeper.vetting.sessions"} <= modules
    deployment.write_policy("[limits]\nmax_sessions = 3\n")
    compile_policy(str(deployment.policy))
    _, modules = imported_modules(deployment, "docker ps -a")
    assert "gatekeeper.vetting.sessions" in modules and "gatekeeper.inflight" in modules


def test_without_compiled_policy_the_toml_is_parsed(deployment: Deployment) -> None:
    """The probe itself works: without a compiled file tomllib shows up."""
    status, modules = imported_modules(deployment, "docker ps")
    assert status == 0
    assert "tomllib" in modules


# --- the audit encoder is json.dumps ---------------------------------------

any_character = st.characters(exclude_categories=())  # includes lone surrogates
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(any_character),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(any_character), inner, max_size=5),
    max_leaves=20,
)


@given(json_values)
@example("\x00\x1f\x7f\x80\u2028\u202e\ufeff\ud800\udfff\U0001f600\"\\/\b\f\n\r\t")
@example({"ts": "2026-11-25T20:16:10.123456Z", "duration_ms": 12.5, "exit": -9, "argv": None})
@example([float("nan"), float("inf"), float("-inf"), -0.0, 1e300, 10**40])
def test_audit_encoder_equals_json_dumps(value: object) -> None:
    assert encode(value) == json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def test_audit_encoder_refuses_what_a_record_never_holds() -> None:
    with pytest.raises(TypeError):
        encode({"x": object()})
    with pytest.raises(TypeError):
        encode({1: "non-string key"})


# --- the key fingerprint without base64 and hashlib ---------------------------

def fingerprint_with_stdlib(blob_b64: str) -> str | None:
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except ValueError:
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@given(st.binary(max_size=600))
def test_fingerprint_of_valid_blob_matches_ssh_keygen_algorithm(blob: bytes) -> None:
    encoded = base64.b64encode(blob).decode()
    assert fingerprint_of_blob(encoded) == fingerprint_with_stdlib(encoded)


@given(st.text(st.sampled_from("AQZaz09+/=-_ \n\x00é"), max_size=40))
def test_fingerprint_of_junk_is_the_same_or_none(text: str) -> None:
    """Never a different fingerprint; at most a stricter refusal of malformed input."""
    assert fingerprint_of_blob(text) in (fingerprint_with_stdlib(text), None)


# --- compiled policies: used only when trustworthy and fresh ---------------------

def forge_compiled(deployment: Deployment, overrides: dict[str, object], *,
                   sha256: str | None = None) -> Path:
    """A compiled file for the policy's current bytes saying something else."""
    data = deployment.policy.read_bytes()
    record = {"format": 1, "sha256": sha256 or hashlib.sha256(data).hexdigest(), "overrides": overrides}
    compiled = Path(str(deployment.policy) + COMPILED_SUFFIX)
    compiled.write_bytes(marshal.dumps(record))
    compiled.chmod(0o644)
    return compiled


EVIL = {"docker": {"binary": "/tmp/evil-docker"}}


def test_compiled_policy_gives_the_same_policy(deployment: Deployment) -> None:
    from_toml = load_policy(str(deployment.policy))
    compile_policy(str(deployment.policy))
    compiled = load_policy(str(deployment.policy))
    assert compiled.settings == from_toml.settings
    assert compiled.sha256 == from_toml.sha256 == hashlib.sha256(deployment.policy.read_bytes()).hexdigest()


def test_trusted_compiled_file_is_used(deployment: Deployment) -> None:
    """Control for the cases below: a forged file that passes every check is believed."""
    forge_compiled(deployment, EVIL)
    assert load_policy(str(deployment.policy)).binary == "/tmp/evil-docker"


def test_policy_edited_after_compiling_is_read_from_toml(deployment: Deployment) -> None:
    compile_policy(str(deployment.policy))
    deployment.write_policy('[commands]\nallowed = ["ps"]\n')
    policy = load_policy(str(deployment.policy))
    assert policy.allowed == frozenset({"container ls"})


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_compiled_file_writable_by_others_is_ignored(deployment: Deployment, mode: int) -> None:
    forge_compiled(deployment, EVIL).chmod(mode)
    assert load_policy(str(deployment.policy)).binary == str(deployment.docker)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_compiled_file_owned_by_someone_else_is_ignored(deployment: Deployment) -> None:
    os.chown(forge_compiled(deployment, EVIL), 65534, 65534)
    assert load_policy(str(deployment.policy)).binary == str(deployment.docker)


def test_compiled_file_behind_a_symlink_is_ignored(deployment: Deployment) -> None:
    compiled = forge_compiled(deployment, EVIL)
    elsewhere = compiled.rename(deployment.root / "elsewhere")
    compiled.symlink_to(elsewhere)
    assert load_policy(str(deployment.policy)).binary == str(deployment.docker)


@pytest.mark.parametrize("content", [b"", b"garbage", marshal.dumps(["not", "a", "dict"]),
                                     marshal.dumps({"format": 2, "sha256": "", "overrides": {}})])
def test_garbled_compiled_file_is_ignored(deployment: Deployment, content: bytes) -> None:
    Path(str(deployment.policy) + COMPILED_SUFFIX).write_bytes(content)
    assert load_policy(str(deployment.policy)).binary == str(deployment.docker)


def test_compiled_file_for_other_bytes_is_ignored(deployment: Deployment) -> None:
    forge_compiled(deployment, EVIL, sha256="0" * 64)
    assert load_policy(str(deployment.policy)).binary == str(deployment.docker)


def test_compiled_overrides_are_validated_like_toml(deployment: Deployment) -> None:
    forge_compiled(deployment, {"docker": {"binary": "relative/docker"}})
    with pytest.raises(PolicyError, match="absolute path"):
        load_policy(str(deployment.policy))


def test_compiled_file_without_its_policy_is_no_policy(deployment: Deployment) -> None:
    forge_compiled(deployment, {})
    deployment.policy.unlink()
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(str(deployment.policy))


def test_invalid_policy_is_not_compiled(deployment: Deployment) -> None:
    deployment.write_policy('[commands]\nallowed = ["no-such-command"]\n')
    done = subprocess.run([sys.executable, "-m", "gatekeeper", "policy", "compile", str(deployment.policy)],
                          cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 78
    assert "no-such-command" in done.stderr
    assert not Path(str(deployment.policy) + COMPILED_SUFFIX).exists()
