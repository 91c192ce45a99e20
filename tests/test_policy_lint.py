"""`gatekeeper policy check` as a linter: each broken policy fails with file, line, value and fix.

The file system the linter sees is a table (``FakeFiles``), so the cases do not depend on
the machine or on running as root.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.operator.lint import ERROR, WARNING, Context, lint

pytestmark = pytest.mark.names_default  # the embedded default's [names] prefix, as deployed

GOOD = """\
[docker]
binary = "/usr/bin/docker"
config_dir = "/etc/gatekeeper/docker"

[paths]
allowed_roots = ["/home/ai-worker"]
state_dir = "/home/ai-worker/.gatekeeper"

[commands]
allowed = ["ps", "run", "logs"]
"""

DIR, FILE = stat.S_IFDIR, stat.S_IFREG


class FakeFiles:
    """stat() over a table: path -> (type|mode, uid); anything else is a root-owned 0755 directory."""

    def __init__(self, table: dict[str, tuple[int, int]], missing: tuple[str, ...] = ()) -> None:
        self.table = {"/usr/bin/docker": (FILE | 0o755, 0), "/policy/p.toml": (FILE | 0o644, 0), **table}
        self.missing = missing

    def __call__(self, path: str) -> os.stat_result:
        if path in self.missing:
            raise FileNotFoundError(path)
        mode, uid = self.table.get(path, (DIR | 0o755, 0))
        return os.stat_result((mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))


def findings_for(
    tmp_path: Path, text: str, files: FakeFiles | None = None
) -> list[tuple[str, int, str, str]]:
    real = tmp_path / "p.toml"
    real.write_text(text)
    fake = files or FakeFiles({})
    fake.table.setdefault(str(real), fake.table.pop("/policy/p.toml"))
    context = Context(stat=fake, docker_data_root="/var/lib/docker", cpu_count=lambda: 4)
    found = lint(str(real), context)
    return [(f.level, f.line, f.what, f"{f.value} {f.problem}; {f.fix}") for f in found]


# Each row: what is changed in GOOD, then (level, line, what, text in value/problem/fix).
CASES = [
    ('allowed_roots = ["/"]', (ERROR, 6, "paths.allowed_roots", '"/" a root at or above /etc'), "root-slash"),
    ('allowed_roots = ["/etc"]', (ERROR, 6, "paths.allowed_roots", "at or above /etc"), "root-etc"),
    ('allowed_roots = ["/home"]', (ERROR, 6, "paths.allowed_roots", "at or above /home"), "root-home"),
    ('allowed_roots = ["/root"]', (ERROR, 6, "paths.allowed_roots", "at or above /root"), "root-root"),
    (
        'allowed_roots = ["/var/lib"]',
        (ERROR, 6, "paths.allowed_roots", "/var/lib/docker"),
        "root-above-docker",
    ),
    (
        'allowed_roots = ["/var/lib/docker/volumes"]',
        (ERROR, 6, "paths.allowed_roots", "inside /var/lib/docker"),
        "root-inside-docker",
    ),
    ('allowed_roots = ["/etc/agent"]', (ERROR, 6, "paths.allowed_roots", "inside /etc"), "root-inside-etc"),
    (
        'allowed_roots = [\n  "/srv/a",\n  "/"\n]',
        (ERROR, 8, "paths.allowed_roots", '"/"'),
        "names-the-line-of-the-value",
    ),
    (
        'allowed = ["ps", "pause"]',
        (WARNING, 10, "commands.allowed", '"pause" gatekeeper has no vetted grammar'),
        "no-grammar",
    ),
    (
        'allowed = ["ps", "frobnicate"]',
        (ERROR, 10, "commands.allowed", '"frobnicate" no such docker command'),
        "unknown-command",
    ),
    ('allowed = ["ps", "rnu"]', (ERROR, 10, "commands.allowed", "did you mean 'run'?"), "command-typo"),
    (
        'allowed = ["ps", "system dial-stdio"]',
        (WARNING, 10, "commands.allowed", "also blocked"),
        "allowed-and-blocked",
    ),
    (
        'config_dir = "/etc/gatekeeper/docker"\nconfg = 1',
        (ERROR, 4, "docker.confg", "did you mean 'config_dir'?"),
        "unknown-key",
    ),
    ('binary = "/nope/docker"', (ERROR, 2, "docker.binary", "no executable there"), "missing-binary"),
    (
        'allowed_roots = "/srv"',
        (ERROR, 6, "paths.allowed_roots", "must be a list of absolute paths"),
        "wrong-type",
    ),
]


def replaced(key: str, new: str) -> str:
    """GOOD with the line that sets ``key`` replaced by ``new``."""
    return "".join(
        new + "\n" if line.startswith(f"{key} =") else line for line in GOOD.splitlines(keepends=True)
    )


@pytest.mark.parametrize(("change", "expected"), [pytest.param(c, e, id=i) for c, e, i in CASES])
def test_each_broken_policy_names_line_value_and_fix(tmp_path: Path, change: str, expected: tuple) -> None:
    text = replaced(change.split(" =", 1)[0].strip("["), change)
    found = findings_for(tmp_path, text, FakeFiles({}, missing=("/nope/docker",)))
    level, line, what, snippet = expected
    assert any(f[0] == level and f[1] == line and f[2] == what and snippet in f[3] for f in found), found


def test_the_good_policy_is_clean(tmp_path: Path) -> None:
    assert findings_for(tmp_path, GOOD) == []


# [limits] that can never apply, or that the engine refuses (this "machine" has 4 CPUs).
# GOOD_LIMITS is the control: the same keys with values that apply lint clean.
GOOD_LIMITS = 'memory = "2g"\ndefault_memory = "1g"\ncpus = 2\ndefault_cpus = 1\nlog_max_size = "10m"\n'
LIMIT_CASES = [
    ('memory = "2g"\ndefault_memory = "4g"', (14, "limits.default_memory", "over its own cap"), "memory"),
    ("cpus = 1\ndefault_cpus = 1.5", (14, "limits.default_cpus", "at most 1"), "cpus-default"),
    ("pids_limit = 100\ndefault_pids_limit = 200", (14, "limits.default_pids_limit", "--pids-limit"), "pids"),
    ('default_memory = "4m"', (13, "limits.default_memory", "minimum memory is 6 MiB"), "memory-too-small"),
    ('memory = "1m"', (13, "limits.memory", "no value within this cap"), "memory-cap-too-small"),
    ("default_cpus = 0.001", (13, "limits.default_cpus", "minimum is 0.01"), "cpus-too-small"),
    ("default_cpus = 8", (13, "limits.default_cpus", "4 CPUs"), "cpus-over-machine"),
    ("cpus = 16", (13, "limits.cpus", "never applies on this machine (4 CPUs)"), "cpus-cap-over-machine"),
    ("log_max_file = 3", (13, "limits.log_max_file", "without log_max_size"), "log-file-without-size"),
    ('min_health_interval = "100us"', (13, "limits.min_health_interval", "under 1ms"), "health-floor"),
]


def test_limits_that_apply_are_clean(tmp_path: Path) -> None:
    assert findings_for(tmp_path, GOOD + "\n[limits]\n" + GOOD_LIMITS) == []


@pytest.mark.parametrize(("limits", "expected"), [pytest.param(c, e, id=i) for c, e, i in LIMIT_CASES])
def test_limits_that_never_apply_warn(tmp_path: Path, limits: str, expected: tuple[int, str, str]) -> None:
    found = findings_for(tmp_path, GOOD + "\n[limits]\n" + limits + "\n")
    line, what, snippet = expected
    assert [f for f in found if f[0] == WARNING and f[1] == line and f[2] == what and snippet in f[3]], found
    assert not [f for f in found if f[0] == ERROR], found  # warnings: the policy still loads


@pytest.mark.parametrize(
    ("files", "what", "snippet"),
    [
        (lambda p: {p: (FILE | 0o666, 0)}, "file mode", "0666 anyone can rewrite"),
        (lambda p: {str(Path(p).parent): (DIR | 0o777, 0)}, "directory", "others can write this directory"),
        (lambda p: {"/etc/gatekeeper/docker": (DIR | 0o755, 1000)}, "docker.config_dir", "owned by uid 1000"),
        (lambda p: {"/etc/gatekeeper/docker": (DIR | 0o777, 0)}, "docker.config_dir", "mode 0777"),
    ],
    ids=[
        "world-writable-policy",
        "policy-in-a-writable-directory",
        "non-root-config-dir",
        "writable-config-dir",
    ],
)
def test_files_that_weaken_confinement(tmp_path: Path, files, what: str, snippet: str) -> None:
    path = str(tmp_path / "p.toml")
    fake = FakeFiles({})
    fake.table.update(files(path))
    found = findings_for(tmp_path, GOOD, fake)
    assert any(f[0] == ERROR and f[2] == what and snippet in f[3] for f in found), found


def test_all_errors_at_once_and_exit_78(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(
        '[paths]\nallowed_roots = ["/"]\n[docker]\nconfg = "x"\n[commands]\nallowed = ["update"]\n'
    )
    policy.chmod(0o666)
    done = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "policy", "check", str(policy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 78
    assert f"{policy}: error: file mode 0666" in done.stderr
    assert f'{policy}:2: error: paths.allowed_roots "/"' in done.stderr
    assert f"{policy}:4: error: docker.confg: unknown key" in done.stderr
    assert f'{policy}:6: warning: commands.allowed "update"' in done.stderr


def test_policy_show_marks_values_from_the_file(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[paths]\nallowed_roots = ["/srv/agent"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "policy", "show", "--policy", str(policy)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"# effective policy from {policy}" in done.stdout
    assert 'allowed_roots = ["/srv/agent"]  # from the policy file' in done.stdout
    assert 'binary = "/usr/bin/docker"\n' in done.stdout


def test_names_prefix_off_is_warned_about(tmp_path: Path) -> None:
    """`prefix = ""` switches the name rule off: said where it is written; the control: the
    key absent (the default "ai-") or another prefix lints clean."""
    found = findings_for(tmp_path, GOOD + '\n[names]\nprefix = ""\n')
    assert [(level, what) for level, _, what, _ in found] == [(WARNING, "names.prefix")], found
    assert "the name rule is off" in found[0][3] and found[0][1] == GOOD.count("\n") + 3
    assert findings_for(tmp_path, GOOD + '\n[names]\nprefix = "agent-"\n') == []


@pytest.mark.parametrize(("extra", "warned"), [
    ("", []),  # the control: the defaults bound a flood
    ("\n[proxy]\nrequest_rate = 0\n", ["proxy.request_rate"]),
    ("\n[proxy]\nrequest_rate = 50\nrequest_burst = 10\n", []),
    ("\n[audit]\nvia_proxy = true\nmax_bytes = 0\n", ["audit.max_bytes"]),
    ("\n[audit]\nvia_proxy = false\nmax_bytes = 0\n", []),  # not the proxy's log: no ceiling of ours
    # [audit] max_bytes_per_uid: one account's flood stops that account only (the default 500 MB of 2 GB)
    ("\n[audit]\nvia_proxy = true\n", []),
    ("\n[audit]\nvia_proxy = true\nmax_bytes_per_uid = 0\n", ["audit.max_bytes_per_uid"]),
    ("\n[audit]\nvia_proxy = true\nmax_bytes = 1000\nmax_bytes_per_uid = 1000\n",
     ["audit.max_bytes_per_uid"]),
    ("\n[audit]\nvia_proxy = true\nmax_bytes = 1000\nmax_bytes_per_uid = 999\n", []),
    ("\n[audit]\nvia_proxy = false\nmax_bytes_per_uid = 0\n", []),
])  # fmt: skip
def test_what_bounds_a_flood_switched_off_is_warned_about(tmp_path: Path, extra: str,
                                                          warned: list[str]) -> None:
    found = findings_for(tmp_path, GOOD + extra)
    assert [what for level, _, what, _ in found if level == WARNING] == warned, found
