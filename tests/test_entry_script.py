"""The ForceCommand entry script (`gatekeeper install-entry`) runs isolated.

Attack: whoever controls the session's environment or a directory on the import
path plants a `gatekeeper` package or a `sitecustomize` of their own (in the
cwd, beside the script, in a PYTHONPATH directory, in the user site) or sets
PYTHONINSPECT, and the ForceCommand runs their code instead of ours.
Control: the same script with a plain `#!python` line (what pip would write)
imports the planted code; with `-I` on the interpreter line nothing of it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.operator.install_entry import SCRIPT, main
from tests.conftest import Deployment

PLANTED = "open({marker!r}, 'a').write({where!r} + '\\n')\n"


def plant(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """Shadows of gatekeeper and sitecustomize everywhere an unisolated python looks."""
    marker = tmp_path / "ran.txt"
    home, cwd, pythonpath, bin_dir = (tmp_path / d for d in ("home", "cwd", "pythonpath", "bin"))
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    user_site = home / ".local" / "lib" / version / "site-packages"
    for where, directory in (("cwd", cwd), ("pythonpath", pythonpath), ("user-site", user_site),
                             ("script-dir", bin_dir)):
        (directory / "gatekeeper").mkdir(parents=True)
        (directory / "gatekeeper" / "__init__.py").write_text(PLANTED.format(marker=str(marker), where=where))
        (directory / "sitecustomize.py").write_text(PLANTED.format(marker=str(marker), where=where + "-site"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(pythonpath),
           "PYTHONINSPECT": "1", "PYTHONSTARTUP": str(pythonpath / "sitecustomize.py"),
           "PYTHONUSERBASE": str(home / ".local")}
    return marker, env, cwd


def run_entry(script: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script), "--version"], env=env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, check=False)


def test_entry_script_imports_nothing_planted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker, env, cwd = plant(tmp_path)
    python = os.path.join(sys.prefix, "bin", "python3")
    # control: the interpreter line pip would write (no options)
    plain = tmp_path / "bin" / "gatekeeper-plain"
    script = SCRIPT.format(python=python, packages="/nonexistent", bundle="/nonexistent.bundle")
    plain.write_text(script.replace(" -IS\n", "\n", 1))
    plain.chmod(0o755)
    run_entry(plain, env, cwd)
    assert {"pythonpath-site", "script-dir"} <= set(marker.read_text().split()), "control: planted code ran"
    marker.unlink()
    # the defence: install-entry's script
    entry = tmp_path / "bin" / "gatekeeper-ssh"
    assert main(["--to", str(entry), "--python", python]) == 0
    assert entry.read_text().startswith(f"#!{python} -IS\n")
    done = run_entry(entry, env, cwd)
    assert done.returncode == 0 and done.stdout.startswith("gatekeeper "), done.stderr
    assert not marker.exists(), marker.read_text()
    assert oct(entry.stat().st_mode & 0o7777) == "0o755"
    assert "ForceCommand" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["--python", "relative/python3"], ["--python", "/opt/with space/python3"],
    ["--python", "/x/" + "a" * 300], ["--python", "/nonexistent/python3"],
    ["--to", "relative-entry"], ["--bogus", "x"], ["--to"],
])  # fmt: skip
def test_install_entry_refuses_what_it_cannot_write_safely(args: list[str], tmp_path: Path) -> None:
    os.chdir(tmp_path)
    assert main(args) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("mode", "refused"), [(0o777, True), (0o775, True), (0o755, False)])
def test_a_package_directory_others_can_write_is_refused(tmp_path: Path, mode: int, refused: bool) -> None:
    """Trying to cheat: with -S the script puts gatekeeper's directory on sys.path itself;
    one the agent could write would let it plant a `gatekeeper` of its own there."""
    from gatekeeper.operator.install_entry import EntryError, package_directory

    packages = tmp_path / "site-packages"
    packages.mkdir()
    packages.chmod(mode)
    fake = tmp_path / "python3"  # answers the probe with that directory
    fake.write_text(f"#!/bin/sh\necho {packages}\n")
    fake.chmod(0o755)
    if refused:
        with pytest.raises(EntryError, match="writable"):
            package_directory(str(fake))
    else:
        assert package_directory(str(fake)) == str(packages)


def test_install_entry_leaves_current_bytecode_for_every_module(tmp_path: Path) -> None:
    """Without .pyc files every call compiles what it imports from source (the agent cannot
    save them in the root-owned directory): install-entry makes them, with the interpreter
    that runs them. Control: before, there are none; a module that does not compile fails it."""
    import importlib.util

    from gatekeeper.operator.install_entry import EntryError, compile_bytecode

    package = tmp_path / "gatekeeper"
    (package / "vetting").mkdir(parents=True)
    modules = [package / "__init__.py", package / "cli.py", package / "vetting" / "run.py"]
    for module in modules:
        module.write_text("X = 1\n")
    cached = [Path(importlib.util.cache_from_source(str(module))) for module in modules]
    assert not any(pyc.exists() for pyc in cached)
    compile_bytecode(os.path.join(sys.prefix, "bin", "python3"), str(package))
    assert all(pyc.exists() for pyc in cached)
    (package / "broken.py").write_text("def (:\n")
    with pytest.raises(EntryError, match="bytecode"):
        compile_bytecode(os.path.join(sys.prefix, "bin", "python3"), str(package))


def test_a_session_through_the_entry_script_leaves_nothing_unsaid(deployment: Deployment) -> None:
    """The entry script ends a ForceCommand session with os._exit (gatekeeper.cli.entry: no
    interpreter teardown). Nothing may be lost by it: the exit status, gatekeeper's own
    lines (the usage text is written without a flush of its own) and both audit records."""
    from gatekeeper.messages import usage_text
    from gatekeeper.policy import load_policy

    entry = deployment.root / "gatekeeper-ssh"
    assert main(["--to", str(entry), "--python", os.path.join(sys.prefix, "bin", "python3")]) == 0
    bundle = deployment.root / "gatekeeper-ssh.bundle"  # the modules in one file (gatekeeper.module_bundle)
    assert f"load({str(bundle)!r}, " in entry.read_text() and oct(bundle.stat().st_mode & 0o777) == "0o644"
    session = {"PATH": "/usr/bin:/bin", "SSH_CONNECTION": "127.0.0.1 40000 127.0.0.1 22"}

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(entry), "--policy", str(deployment.policy)], env={**session, **extra},
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                              check=False)

    allowed = run(SSH_ORIGINAL_COMMAND="docker ps -a")
    assert (allowed.returncode, allowed.stderr) == (0, "")
    assert deployment.argv() == ["ps", "-a"]
    denied = run(SSH_ORIGINAL_COMMAND="docker exec web sh")
    assert denied.returncode == 77
    assert denied.stderr.startswith("gatekeeper: denied: ") and denied.stderr.endswith("\n")
    login = run()
    assert login.returncode == 77
    assert login.stderr == usage_text(load_policy(str(deployment.policy), None))
    events = [json.loads(line)["event"] for line in deployment.audit_lines()]
    assert events == ["decision", "exit", "decision", "decision"]
