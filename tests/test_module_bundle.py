"""The entry script's module bundle (gatekeeper.module_bundle) is the sources' bytecode,
used only while it is as trustworthy as the sources and made from their current bytes.

Attack: whoever can write the bundle, or put one where the entry script looks, runs
their bytecode as the ForceCommand (the bundle is code, like a .pyc). And a bundle left
from before an upgrade would run old code beside new sources.
Control (each case): the same bundle, trusted and current, is used; so "ignored" means
the check, not a bundle that never loads.
"""

from __future__ import annotations

import importlib.machinery
import marshal
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.module_bundle import FORMAT, LENGTH_BYTES, bundle_bytes, bundled_sources, write_bundle
from gatekeeper.policy import compile_policy
from tests.conftest import REPO, Deployment
from tests.test_hot_path import HEAVY_MODULES

# Imports through a bundle in a fresh -IS interpreter, as the entry script does; prints
# whether it was used, X of gatekeeper.hello and the loader that served it.
PROBE = """
import sys
sys.path.append({packages!r})
from gatekeeper.module_bundle import load
used = load({bundle!r}, {packages!r})
import gatekeeper.hello
print(used, gatekeeper.hello.X, type(gatekeeper.hello.__spec__.loader).__name__)
"""


def header(data: bytes) -> tuple[int, tuple[bytes, tuple[tuple[str, tuple[int, int, int]], ...],
                                              dict[str, tuple[bool, str, int, int]]]]:
    start = len(FORMAT) + LENGTH_BYTES
    length = int.from_bytes(data[len(FORMAT):start], "big")
    return start + length, marshal.loads(data[start:start + length])  # noqa: S302 - our own test files


def code_in(data: bytes) -> dict[str, object]:
    end, (_, _, index) = header(data)
    return {name: marshal.loads(data[end + offset:end + offset + size])  # noqa: S302 - our own test files
            for name, (_, _, offset, size) in index.items()}


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    """A small installation: gatekeeper with module_bundle, a module, a subpackage and an
    operator package (never bundled)."""
    root = tmp_path / "site-packages"
    package = root / "gatekeeper"
    (package / "sub").mkdir(parents=True)
    (package / "operator").mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(REPO / "gatekeeper" / "module_bundle.py", package / "module_bundle.py")
    (package / "hello.py").write_text('X = "source"\n')
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "deep.py").write_text("from gatekeeper.hello import X\n")
    (package / "operator" / "__init__.py").write_text('X = "operator"\n')
    return root


def probe(packages: Path, bundle: Path) -> list[str]:
    code = PROBE.format(packages=str(packages), bundle=str(bundle))
    done = subprocess.run([sys.executable, "-IS", "-c", code], env={"PATH": "/usr/bin:/bin"}, cwd="/",
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


USED = ["True", "source", "BundleFinder"]
IGNORED = ["False", "source", "SourceFileLoader"]


def test_the_bundle_is_each_module_as_import_compiles_it() -> None:
    """Every module but the operator's and the proxy's, each the code import makes of its source."""
    data = bundle_bytes(str(REPO))
    code = code_in(data)
    expected = {name for name, _ in bundled_sources(str(REPO))}
    assert set(code) == expected
    assert {"gatekeeper.cli", "gatekeeper.forcecommand", "gatekeeper.decision", "gatekeeper.vetting.run",
            "gatekeeper.grammar.docker_flags", "gatekeeper.engine_api"} <= expected
    assert not {name for name in expected if name.startswith(("gatekeeper.operator", "gatekeeper.proxy"))}
    for name, relative in bundled_sources(str(REPO)):
        loader = importlib.machinery.SourceFileLoader(name, str(REPO / relative))
        assert code[name] == loader.get_code(name), name


def test_a_trusted_current_bundle_serves_the_modules(packages: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "gatekeeper-ssh.bundle"
    write_bundle(str(bundle), str(packages))
    assert oct(bundle.stat().st_mode & 0o777) == "0o644"
    assert probe(packages, bundle) == USED
    assert probe(packages, tmp_path / "missing.bundle") == IGNORED


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_a_bundle_others_can_write_is_ignored(packages: Path, tmp_path: Path, mode: int) -> None:
    bundle = tmp_path / "gatekeeper-ssh.bundle"
    write_bundle(str(bundle), str(packages))
    assert probe(packages, bundle) == USED  # control
    bundle.chmod(mode)
    assert probe(packages, bundle) == IGNORED


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away takes root")
def test_a_planted_bundle_of_another_owner_is_ignored(packages: Path, tmp_path: Path) -> None:
    """Trying to cheat: a bundle with the sources' current stamps but code of its own.
    Owned by root, it runs (what keeps it out is the owner check); owned by anyone else, not."""
    bundle = tmp_path / "gatekeeper-ssh.bundle"
    write_bundle(str(bundle), str(packages))
    bundle.write_bytes(forged(bundle.read_bytes(), "gatekeeper.hello", 'X = "planted"\n'))
    assert probe(packages, bundle) == ["True", "planted", "BundleFinder"]  # control
    os.chown(bundle, 65534, 65534)
    assert probe(packages, bundle) == IGNORED


def test_a_bundle_through_a_symlink_is_ignored(packages: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "gatekeeper-ssh.bundle"
    write_bundle(str(bundle), str(packages))
    link = tmp_path / "link.bundle"
    link.symlink_to(bundle)
    assert probe(packages, bundle) == USED  # control
    assert probe(packages, link) == IGNORED


def test_a_changed_source_makes_the_whole_bundle_ignored(packages: Path, tmp_path: Path) -> None:
    """An upgrade without install-entry: the new source runs, and no old module beside it."""
    bundle = tmp_path / "gatekeeper-ssh.bundle"
    write_bundle(str(bundle), str(packages))
    assert probe(packages, bundle) == USED  # control
    (packages / "gatekeeper" / "hello.py").write_text('X = "newer"\n')
    assert probe(packages, bundle) == ["False", "newer", "SourceFileLoader"]
    write_bundle(str(bundle), str(packages))
    os.utime(packages / "gatekeeper" / "sub" / "deep.py", ns=(1, 1))  # another module, same bytes
    assert probe(packages, bundle) == ["False", "newer", "SourceFileLoader"]


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "other-format", "other-magic",
                                    "short-code", "longer"])
def test_a_damaged_bundle_is_ignored(packages: Path, tmp_path: Path, damage: str) -> None:
    bundle = tmp_path / "gatekeeper-ssh.bundle"
    write_bundle(str(bundle), str(packages))
    assert probe(packages, bundle) == USED  # control
    data = bundle.read_bytes()
    _, (_, stamps, index) = header(data)
    damaged = {
        "empty": b"",
        "truncated": data[:len(FORMAT) + LENGTH_BYTES + 10],
        "garbage": FORMAT + b"\xff" * 64,
        "other-format": data.replace(FORMAT, FORMAT.replace(b"1", b"2"), 1),
        "other-magic": rebuilt(data, (b"\x00\x00\r\n", stamps, index)),
        "short-code": data[:-1],
        "longer": data + b"\0",
    }[damage]
    bundle.write_bytes(damaged)
    assert probe(packages, bundle) == IGNORED


def forged(data: bytes, name: str, source: str) -> bytes:
    """The bundle with `name`'s code replaced, stamps and all else unchanged."""
    _, (magic, stamps, index) = header(data)
    code = code_in(data)
    code[name] = compile(source, index[name][1], "exec", dont_inherit=True)
    blobs, offset, new_index = [], 0, {}
    for module, (is_package, origin, _, _) in index.items():
        blob = marshal.dumps(code[module])
        new_index[module] = (is_package, origin, offset, len(blob))
        blobs.append(blob)
        offset += len(blob)
    return rebuilt(b"", (magic, stamps, new_index)) + b"".join(blobs)


def rebuilt(data: bytes, head: tuple[object, ...]) -> bytes:
    """New header; the code that followed the old one (if any) kept."""
    end = header(data)[0] if data else 0
    encoded = marshal.dumps(head)
    return FORMAT + len(encoded).to_bytes(LENGTH_BYTES, "big") + encoded + data[end:]


@pytest.mark.parametrize(("command", "code"), [("docker ps -a", 0), ("docker exec web sh", 77)])
def test_the_forcecommand_through_the_bundle_imports_nothing_heavy(deployment: Deployment, tmp_path: Path,
                                                                  command: str, code: int) -> None:
    """The bundle changes where the code comes from, not what is imported: an allowed and a
    denied command take every gatekeeper module they import from the bundle, and import no heavy one."""
    compile_policy(str(deployment.policy))
    bundle = tmp_path / "gatekeeper-ssh.bundle"
    write_bundle(str(bundle), str(REPO))
    auth_info = deployment.root / "auth-info"
    auth_info.write_text("publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDXk7wbgq8S0Sl9NeUqXJqSRiowW5kpq\n")
    script = (f"import sys\nsys.path.append({str(REPO)!r})\nfrom gatekeeper.module_bundle import load\n"
              f"assert load({str(bundle)!r}, {str(REPO)!r})\nbefore = set(sys.modules)\n"
              f"import gatekeeper.cli\ncode = gatekeeper.cli.main(['--policy', {str(deployment.policy)!r}])\n"
              "new = sorted(set(sys.modules) - before)\n"
              "served = [m for m in new if m.startswith('gatekeeper') "
              "and type(sys.modules[m].__spec__.loader).__name__ != 'BundleFinder']\n"
              "print(' '.join(new)); print('not-from-bundle', *served); sys.exit(code)\n")
    env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": command, "SSH_USER_AUTH": str(auth_info),
           "SSH_CONNECTION": "127.0.0.1 40000 127.0.0.1 22"}
    done = subprocess.run([sys.executable, "-IS", "-c", script], env=env, cwd="/", capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == code, done.stderr
    imported, served = done.stdout.splitlines()
    modules = set(imported.split())
    assert ("gatekeeper.execution" in modules) == (code == 0)  # the allowed one did run docker
    if code == 0:
        assert deployment.argv() == ["ps", "-a"]
    assert served == "not-from-bundle"
    assert {name for name in modules if name.split(".")[0] in HEAVY_MODULES} == set()
