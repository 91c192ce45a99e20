"""`gatekeeper install-entry`: write the ForceCommand's entry script.

    ForceCommand exec /opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml

The script's interpreter line runs this installation's Python isolated and
without the site module (`#!<venv>/bin/python3 -IS`: no PYTHON* variables, no
user site, neither the cwd nor the script's directory on sys.path, no .pth files
or sitecustomize), adds the one directory gatekeeper is installed in (found at
install time, refused if group- or other-writable) and calls gatekeeper.cli.main
directly, so a call skips runpy (`python3 -I -m gatekeeper` resolves the
package through runpy on every call) and site (~1 ms), and sshd_config keeps a
plain command line with no code in it.

pip cannot make this script: it rewrites a `#!python` line to the bare
interpreter and drops options, so a console script would run without -I.
The script is written atomically (temporary file, rename), root-owned 0755,
and then run once with --version to prove the kernel starts it.

It also compiles gatekeeper's modules to bytecode with that interpreter (compileall:
only what is missing or stale). pip does so when it installs, unless told not to
(--no-compile); without the .pyc files every call compiles each module it imports
from source, and cannot save the result in the root-owned directory: a denied
command took 32 ms instead of 15 here, an allowed one more.

Beside the script it writes `gatekeeper-ssh.bundle`: the bytecode of every module the
ForceCommand may import, in one file the script reads instead of searching for and
opening each module's .pyc (gatekeeper.module_bundle: used only while it is root's,
writable by nobody else and every source it was made from is unchanged; else the
modules are imported from their sources as before).
"""

from __future__ import annotations

import os
import sys

from gatekeeper.errors import GatekeeperError

ENTRY_NAME = "gatekeeper-ssh"
SHEBANG_LIMIT = 255  # Linux reads at most this many bytes of the #! line
PLAIN_PATH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+")

SCRIPT = """\
#!{python} -IS
# Written by `gatekeeper install-entry`: the sshd ForceCommand, without runpy.
# -I: no PYTHON* variables, no user site, nothing from the cwd or this directory on sys.path.
# -S: no site module (no .pth files, no sitecustomize); gatekeeper's directory is added here.
import sys

sys.path.append({packages!r})
from gatekeeper.module_bundle import load

load({bundle!r}, {packages!r})  # the modules' bytecode in one file, if trusted and current
from gatekeeper.cli import entry

entry()
"""

USAGE = """\
usage: gatekeeper install-entry [--to PATH] [--python PATH] [--resident]

Write the ForceCommand entry script (default: gatekeeper-ssh beside this
installation's python3, e.g. /opt/gatekeeper/bin/gatekeeper-ssh), whose
interpreter line runs that python3 isolated (-I). Then use it in sshd_config:

    ForceCommand exec /opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml

With --resident it also compiles (gcc) gatekeeper-ssh-resident beside it, the
ForceCommand client of `gatekeeper resident` (the default; it denies when the pool
is not running, and runs nothing itself):

    ForceCommand exec /opt/gatekeeper/bin/gatekeeper-ssh-resident --policy /etc/gatekeeper/policy.toml

examples:
  /opt/gatekeeper/bin/gatekeeper install-entry
  gatekeeper install-entry --to /opt/gatekeeper/bin/gatekeeper-ssh --python /opt/gatekeeper/bin/python3
"""


class EntryError(GatekeeperError):
    """The entry script cannot be written safely."""


def main(args: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in args):
        sys.stdout.write(USAGE)
        return 0
    resident = "--resident" in args
    try:
        options = parse([arg for arg in args if arg != "--resident"])
        python = interpreter(options.get("--python") or default_python())
        target = options.get("--to") or os.path.join(os.path.dirname(python), ENTRY_NAME)
        packages = package_directory(python)
        compile_bytecode(python, os.path.join(packages, "gatekeeper"))
        write_module_bundle(python, bundle_path(target), packages)
        write_entry(target, python, packages)
        prove_it_starts(target)
        if resident:
            write_resident_client(resident_path(target), packages)
    except EntryError as error:
        sys.stderr.write(f"gatekeeper install-entry: {error}\n")
        return 1
    if resident:
        sys.stdout.write(f"wrote {resident_path(target)} (client of `gatekeeper resident`; "
                         "without the pool running it denies every call)\n")
    sys.stdout.write(f"wrote {target} (#!{python} -IS) and {bundle_path(target)}\n"
                     f"ForceCommand exec {target} --policy /etc/gatekeeper/policy.toml\n")
    return 0


def parse(args: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in zip(args[::2], args[1::2], strict=False):
        if name not in ("--to", "--python") or name in options:
            raise EntryError(f"unknown or repeated option {name!r}\n{USAGE}")
        options[name] = value
    if len(args) % 2:
        raise EntryError(f"{args[-1]!r} needs a value\n{USAGE}")
    return options


def default_python() -> str:
    """This installation's interpreter as the venv names it (not resolved: the
    venv's own bin/python3 is what makes its site-packages the ones imported)."""
    return os.path.join(sys.prefix, "bin", "python3")


def interpreter(python: str) -> str:
    if not python.startswith("/") or not set(python) <= PLAIN_PATH:
        # A space would split the #! line; other bytes are not worth the doubt.
        raise EntryError(f"interpreter {python!r}: an absolute path of plain characters is needed")
    if len(f"#!{python} -IS") > SHEBANG_LIMIT:
        raise EntryError(f"interpreter path {python!r} is too long for a #! line")
    if not os.access(python, os.X_OK):
        raise EntryError(f"interpreter {python!r} is not an executable")
    return python


def package_directory(python: str) -> str:
    """The directory `python` imports gatekeeper from (its site-packages), asked of that
    interpreter itself; refused unless absolute, plain and writable by its owner only."""
    import subprocess

    probe = ("import gatekeeper, os; "
             "print(os.path.dirname(os.path.dirname(os.path.abspath(gatekeeper.__file__))))")
    done = subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, cwd="/", timeout=30, check=False)
    directory = done.stdout.strip()
    if done.returncode != 0 or not directory.startswith("/") or not set(directory) <= PLAIN_PATH:
        raise EntryError(f"{python} does not import gatekeeper from a plain absolute directory: "
                         f"{(done.stderr or directory).strip()[:200]}")
    if os.stat(directory).st_mode & 0o022:
        raise EntryError(f"{directory} is group- or other-writable: whoever writes it runs as the agent")
    return directory


def compile_bytecode(python: str, package: str) -> None:
    """Current .pyc files for every module of the package, made by the interpreter that runs them."""
    import subprocess

    done = subprocess.run([python, "-I", "-m", "compileall", "-q", package], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, cwd="/", timeout=300, check=False)
    if done.returncode != 0:
        raise EntryError(f"cannot compile {package} to bytecode: {(done.stdout + done.stderr).strip()[:200]}")


def bundle_path(target: str) -> str:
    """The module bundle (gatekeeper.module_bundle) beside the entry script."""
    return f"{target}.bundle"


def write_module_bundle(python: str, bundle: str, packages: str) -> None:
    """The ForceCommand's modules in one file, compiled by the interpreter that runs them,
    then loaded once by it to prove the entry script will use it (owner, mode, sources)."""
    import subprocess

    if not bundle.startswith("/"):
        raise EntryError(f"{bundle!r}: an absolute path is needed")
    proof = ("import sys; from gatekeeper.module_bundle import load; "
             "sys.exit(0 if load(sys.argv[1], sys.argv[2]) else 3)")
    for argv in ([python, "-I", "-m", "gatekeeper.module_bundle", bundle, packages],
                 [python, "-I", "-c", proof, bundle, packages]):
        done = subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd="/",
                              timeout=300, check=False)
        if done.returncode != 0:
            said = (done.stdout + done.stderr).strip()[:200] or "it is not trusted or not current"
            raise EntryError(f"cannot write a usable module bundle {bundle}: {said}")


def write_entry(target: str, python: str, packages: str) -> None:
    if not target.startswith("/"):
        raise EntryError(f"{target!r}: an absolute path is needed")
    temporary = f"{target}.tmp-{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(SCRIPT.format(python=python, packages=packages, bundle=bundle_path(target)))
        os.chmod(temporary, 0o755)  # noqa: S103 - sshd runs it as the agent: read and execute for all
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def prove_it_starts(target: str) -> None:
    import subprocess

    done = subprocess.run([target, "--version"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, cwd="/", timeout=30, check=False)
    if done.returncode != 0 or not done.stdout.startswith("gatekeeper "):
        said = (done.stderr or done.stdout).strip()[:200]
        raise EntryError(f"{target} was written but does not start: {said}")


def resident_path(target: str) -> str:
    """The resident pool's client (gatekeeper.resident) beside the entry script."""
    return f"{target}-resident"


def write_resident_client(client: str, packages: str, socket_directory: str = "") -> None:
    """Compile gatekeeper/resident_client.c with the machine's gcc, its socket directory built
    in, to a temporary file renamed over `client` (root-owned 0755)."""
    import shutil
    import subprocess

    from gatekeeper.resident import SOCKET_DIRECTORY

    directory = socket_directory or SOCKET_DIRECTORY
    if not set(directory) <= PLAIN_PATH:
        raise EntryError(f"{directory!r} must be a plain path to be built into the client")
    compiler = shutil.which("gcc", path="/usr/bin:/bin")
    if compiler is None:
        raise EntryError("--resident needs gcc (Debian: apt-get install gcc libc6-dev)")
    source = os.path.join(packages, "gatekeeper", "resident_client.c")
    temporary = f"{client}.tmp-{os.getpid()}"
    argv = [compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong",
            f"-DGK_SOCKET_DIR=\"{directory}\"",
            "-o", temporary, source]
    done = subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd="/",
                          timeout=120, check=False)
    if done.returncode != 0:
        raise EntryError(f"cannot compile {source}: {(done.stdout + done.stderr).strip()[:300]}")
    os.chmod(temporary, 0o755)  # noqa: S103 - sshd runs it as the agent
    os.replace(temporary, client)
