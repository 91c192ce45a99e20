"""The NixOS module, evaluated and rendered, gives a working, confined deployment.

nixpkgs is not available here, so tests/fixtures/nixos/standin.nix stands in
for the parts of `lib`, `pkgs` and the module system the module uses, and
renders what NixOS would build: sshd_config, the policy, users and groups,
tmpfiles rules, logrotate settings, masked units. The real `nix-instantiate`
evaluates the real module file; the real sshd judges the rendered config with
`sshd -T`; gatekeeper's own loader reads the generated policy.

Defects of the old module, each shown by a control: no group of its own (the
user got "users" and the tmpfiles rule for the audit log named a group that
did not exist: every command refused); a Match block at default priority, so
an operator's later global extraConfig line became part of it; policy and
policyFile silently ignoring each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.policy import load_policy
from tests.test_entry_script import plant, run_entry

from .stack import REPO_ROOT, make_keypair

# sshd -t/-T run here without the stack: they need sshd's runtime directory.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("sshd_runtime_dir")]

MODULE = REPO_ROOT / "sshd_snippets" / "nixos" / "gatekeeper.nix"
STANDIN = REPO_ROOT / "tests" / "fixtures" / "nixos" / "standin.nix"
PYTHON_ENV_PATH = "/nix/store/00000000000000000000000000000000-python3-env"
ENTRY_COMMAND = "/etc/gatekeeper/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml"  # the fallback
PYTHON_ENV = f'{{ type = "derivation"; outPath = "{PYTHON_ENV_PATH}"; }}'


def render(tmp_path: Path, gatekeeper: str, *, host_extra: str = "", module: Path = MODULE,
           ignore_order: bool = False) -> dict[str, object]:  # fmt: skip
    expression = tmp_path / "host.nix"
    expression.write_text(f"""
import {STANDIN} {{
  module = import {module};
  ignoreOrder = {"true" if ignore_order else "false"};
  settings = {{
    services.gatekeeper = {{ enable = true; package = {PYTHON_ENV}; {gatekeeper} }};
    services.openssh.extraConfig = {json.dumps(host_extra)};
  }};
}}
""")
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", str(expression)],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def sshd_settings(tmp_path: Path, config_text: str, user: str) -> dict[str, list[str]]:
    host_key = tmp_path / "host_ed25519"
    if not host_key.exists():
        make_keypair(host_key, "nixos render")
    config = tmp_path / "sshd_config"
    config.write_text(f"HostKey {host_key}\n{config_text}")
    spec = f"user={user},addr=127.0.0.1,host=localhost,laddr=127.0.0.1,lport=22"
    out = subprocess.run(["/usr/sbin/sshd", "-T", "-f", str(config), "-C", spec], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    settings: dict[str, list[str]] = {}
    for line in out.splitlines():
        keyword, _, value = line.partition(" ")
        settings.setdefault(keyword, []).append(value)
    return settings


def toml_text(value: dict[str, object], prefix: str = "") -> str:
    """Enough TOML for the generated policy: tables of strings, numbers, booleans, string lists."""
    scalars = [f"{key} = {json.dumps(item)}" for key, item in value.items() if not isinstance(item, dict)]
    tables = [toml_text(item, f"{prefix}{key}.") for key, item in value.items() if isinstance(item, dict)]
    head = f"[{prefix[:-1]}]\n" if prefix and scalars else ""
    return head + "".join(line + "\n" for line in scalars) + "".join(tables)


def test_agent_gets_the_confined_settings_from_the_real_sshd(tmp_path: Path) -> None:
    rendered = render(tmp_path, 'authorizedKeys = [ "ssh-ed25519 AAAA a" ];')
    settings = sshd_settings(tmp_path, str(rendered["sshdConfig"]), "ai-worker")
    forced = "exec /etc/gatekeeper/gatekeeper-ssh-resident --policy /etc/gatekeeper/policy.toml"
    assert settings["forcecommand"] == [forced]  # resident.enable, the default
    assert rendered["user"]["keys"] == [f'restrict,command="{ENTRY_COMMAND}" ssh-ed25519 AAAA a']  # type: ignore[index]
    assert str(rendered["entryScript"]).startswith(f"#!{PYTHON_ENV_PATH}/bin/python3 -I\n")
    assert "NIX_PYTHONPATH=" in settings["setenv"]
    assert settings["acceptenv"] == ["GATEKEEPER_NO_CLIENT_ENV"]
    for keyword, value in {"permittty": "no", "disableforwarding": "yes", "permituserenvironment": "no",
                           "authorizedkeyscommand": "none", "trustedusercakeys": "none",
                           "authorizedkeysfile": "/etc/ssh/authorized_keys.d/%u"}.items():  # fmt: skip
        assert settings[keyword] == [value], keyword


def test_match_block_comes_last(tmp_path: Path) -> None:
    """An operator's global `AllowTcpForwarding no` must keep applying to other users."""
    operator_line = "AllowTcpForwarding no"
    # Control: at default priority the operator's line lands inside our Match block.
    (tmp_path / "old").mkdir()
    old = render(tmp_path / "old", "", host_extra=operator_line, ignore_order=True)
    old_settings = sshd_settings(tmp_path / "old", str(old["sshdConfig"]), "operator")
    assert old_settings["allowtcpforwarding"] == ["yes"]
    (tmp_path / "new").mkdir()
    new = render(tmp_path / "new", "", host_extra=operator_line)
    assert sshd_settings(tmp_path / "new", str(new["sshdConfig"]), "operator")["allowtcpforwarding"] == ["no"]


def log_rule(rendered: dict[str, object]) -> str:
    rules = rendered["tmpfiles"]
    assert isinstance(rules, list)
    return str(next(rule for rule in rules if rule.startswith("f /var/log/gatekeeper/")))


def test_own_group_and_the_audit_log_group_exist(tmp_path: Path) -> None:
    """With the proxy (the default) the agent is in no docker group and cannot open the log;
    without it, group docker and a log its gatekeeper appends to (a group that must exist)."""
    rendered = render(tmp_path, "")
    user = rendered["user"]
    assert isinstance(user, dict) and user["group"] == "ai-worker" and user["extraGroups"] == []
    assert log_rule(rendered) == "f /var/log/gatekeeper/audit.jsonl 0600 root root -"
    assert "h /var/log/gatekeeper/audit.jsonl - - - - +a" in rendered["tmpfiles"]
    (tmp_path / "direct").mkdir()
    direct = render(tmp_path / "direct", "proxy.enable = false;")
    assert direct["user"]["extraGroups"] == ["docker"]  # type: ignore[index]
    assert log_rule(direct).split()[2:5] == ["0620", "root", "ai-worker"]
    assert log_rule(direct).split()[4] in direct["groups"]  # type: ignore[operator]
    assert direct["proxyService"] == {}
    # Control: without `group = cfg.group;` isNormalUser gives "users", and no
    # group named in the tmpfiles rule would exist had the module not declared it.
    old_module = tmp_path / "old.nix"
    # (the client's source named absolutely: the copy is not beside the repository's tree)
    old_module.write_text(MODULE.read_text().replace("      group = cfg.group;\n", "").replace(
        "../../gatekeeper/resident_client.c", str(REPO_ROOT / "gatekeeper" / "resident_client.c")))
    (tmp_path / "old").mkdir()
    assert render(tmp_path / "old", "", module=old_module)["user"]["group"] == "users"  # type: ignore[index]


def test_policy_is_generated_from_options_and_loads(tmp_path: Path) -> None:
    rendered = render(tmp_path, 'user = "agent2"; group = "agent2"; policy = { limits.memory = "2g"; };')
    policy = rendered["policyValue"]
    assert isinstance(policy, dict)
    assert policy["docker"]["binary"].startswith("/nix/store/") and policy["docker"]["binary"].endswith(
        "-docker-24.0.9/bin/docker")
    assert policy["docker"]["workdir"] == "/home/agent2"
    assert policy["paths"]["allowed_roots"] == ["/home/agent2"]
    assert policy["limits"]["memory"] == "2g"
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(toml_text(policy))
    loaded = load_policy(str(policy_file))
    assert loaded.binary == policy["docker"]["binary"] and loaded.workdir == "/home/agent2"
    assert rendered["policyPath"].endswith("-gatekeeper-policy.toml")
    assert "policy compile /etc/gatekeeper/policy.toml" in str(rendered["activation"])


def test_policy_and_policy_file_together_fail_the_build(tmp_path: Path) -> None:
    both = render(tmp_path, 'policyFile = "/etc/site/policy.toml"; policy = { limits.memory = "2g"; };')
    assert any("not both" in message for message in both["failedAssertions"])
    (tmp_path / "file").mkdir()
    file_only = render(tmp_path / "file", 'policyFile = "/etc/site/policy.toml";')
    assert file_only["failedAssertions"] == [] and file_only["policyPath"] == "/etc/site/policy.toml"


def test_user_manager_masked_lingering_off_logrotate_append_only(tmp_path: Path) -> None:
    rendered = render(tmp_path, "uid = 2345;")
    assert rendered["masked"] == ["user@2345"]
    assert rendered["user"]["linger"] is False  # type: ignore[index]
    rotate = rendered["logrotate"]
    assert isinstance(rotate, dict) and rotate["nocreate"] == "yes" and rotate["delaycompress"] == "yes"
    assert "chattr -a /var/log/gatekeeper/audit.jsonl" in rotate["firstaction"]
    assert "chattr +a /var/log/gatekeeper/audit.jsonl\n" in rotate["postrotate"]
    # the new live log as the old one was (root:root 0600 with the proxy, root:GROUP 0620 without)
    assert ("chown --reference=/var/log/gatekeeper/audit.jsonl.1 /var/log/gatekeeper/audit.jsonl"
            in rotate["postrotate"])  # fmt: skip


def unit_service_config(name: str = "gatekeeper-proxy.service") -> dict[str, str]:
    """[Service] of sshd_snippets/<name>, as key -> value."""
    unit = (REPO_ROOT / "sshd_snippets" / name).read_text()
    section = unit.split("[Service]\n", 1)[1].split("\n[", 1)[0]
    pairs = [line.split("=", 1) for line in section.splitlines() if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_proxy_service_is_the_debian_unit(tmp_path: Path) -> None:
    """The same hardening as sshd_snippets/gatekeeper-proxy.service, key by key, and the
    generated policy sends the agent and the audit records through the proxy."""
    rendered = render(tmp_path, "")
    service = rendered["proxyService"]
    assert isinstance(service, dict) and service["wantedBy"] == ["multi-user.target"]
    nix = {key: ("yes" if value is True else value) for key, value in service["serviceConfig"].items()}
    assert nix.pop("ExecStart").endswith("-python3-env/bin/python3 -I -m gatekeeper proxy "
                                         "--policy /etc/gatekeeper/policy.toml")  # fmt: skip
    assert nix.pop("ExecReload").endswith("-coreutils-9.3/bin/kill -HUP $MAINPID")
    debian = unit_service_config()
    debian.pop("ExecStart")
    assert debian.pop("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert nix == debian
    policy = rendered["policyValue"]
    assert isinstance(policy, dict)
    assert policy["docker"]["host"] == "unix:///run/gatekeeper/docker.sock"
    assert policy["audit"]["via_proxy"] is True
    assert policy["proxy"] == {"listen": "/run/gatekeeper/docker.sock", "group": "ai-worker",
                               "upstream": "/run/docker.sock", "users": {"ai-worker": "default"}}  # fmt: skip


def test_the_entry_script_runs_gatekeeper_isolated(tmp_path: Path) -> None:
    """The module's ForceCommand script (#!<env>/bin/python3 -I, gatekeeper.cli.entry without
    runpy), run here by this interpreter: nothing planted in the cwd, the script's directory,
    PYTHONPATH or the user site runs. Control: the same script without -I runs the planted code."""
    rendered = render(tmp_path, "")
    text = str(rendered["entryScript"])
    python = os.path.join(sys.prefix, "bin", "python3")
    marker, env, cwd = plant(tmp_path)
    for name, line in (("gatekeeper-plain", f"#!{python}\n"), ("gatekeeper-ssh", f"#!{python} -I\n")):
        script = tmp_path / "bin" / name
        script.write_text(text.replace(f"#!{PYTHON_ENV_PATH}/bin/python3 -I\n", line, 1))
        script.chmod(0o755)
    run_entry(tmp_path / "bin" / "gatekeeper-plain", env, cwd)
    assert {"pythonpath-site", "script-dir"} <= set(marker.read_text().split()), "control: planted code ran"
    marker.unlink()
    done = run_entry(tmp_path / "bin" / "gatekeeper-ssh", env, cwd)
    assert done.returncode == 0 and done.stdout.startswith("gatekeeper "), done.stderr
    assert not marker.exists(), marker.read_text()


def test_resident_service_is_the_debian_unit_and_off_forces_the_entry_script(tmp_path: Path) -> None:
    """resident.enable (the default): the client compiled as install-entry --resident does, the
    pool's unit key by key as sshd_snippets/gatekeeper-resident.service. Off: the fallback, the
    entry script forced, no unit, no client."""
    rendered = render(tmp_path, "")
    service = rendered["residentService"]
    assert isinstance(service, dict) and service["wantedBy"] == ["multi-user.target"]
    nix = {key: ("yes" if value is True else str(value)) for key, value in service["serviceConfig"].items()}
    pool = "-I -m gatekeeper resident --user ai-worker --workers 3"
    assert nix.pop("ExecStart") == f"{PYTHON_ENV_PATH}/bin/python3 {pool}"
    debian = unit_service_config("gatekeeper-resident.service")
    assert debian.pop("ExecStart") == f"/opt/gatekeeper/bin/python3 {pool}"
    assert nix == debian
    client = str(rendered["residentClient"])
    assert "resident_client.c" in client and '-DGK_SOCKET_DIR=\'"/run/gatekeeper-resident"\'' in client
    assert "-Werror" in client and "-fstack-protector-strong" in client
    (tmp_path / "off").mkdir()
    off = render(tmp_path / "off", "resident.enable = false;")
    assert (off["residentService"], off["residentClient"]) == ({}, None)
    settings = sshd_settings(tmp_path, str(off["sshdConfig"]), "ai-worker")
    assert settings["forcecommand"] == [f"exec {ENTRY_COMMAND}"]
