"""`gatekeeper proxy` as the deployment runs it (the installed venv, --policy FILE), on a
private socket in front of the stack's engine, for tests and benches that drive it with
the real docker CLI as root ([proxy.users] root = "default" here)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .stack import DOCKER_CONFIG_DIR, DOCKER_SOCKET, RUN_DIR, VENV, docker_client, policy_text


class ProxyDaemon:
    def __init__(self, directory: Path, process: subprocess.Popen[bytes]) -> None:
        self.directory = directory
        self.socket = directory / "docker.sock"
        self.process = process
        self.log = directory / "proxy.log"

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{self.socket}",
                "DOCKER_CONFIG": str(DOCKER_CONFIG_DIR), "HOME": "/root"}

    def docker(self, *args: str, timeout: float = 120.0,
               input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(docker_client()), *args], capture_output=True, text=True, env=self.env(),
                              timeout=timeout, input=input_text, check=False)


def without_proxy_sections(text: str) -> str:
    """The stack's policy without its own [proxy] and [proxy.users] (this proxy has its own)."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            skipping = line.startswith("[proxy")
        if not skipping:
            kept.append(line)
    return "".join(kept)


def proxy_policy(directory: Path, *, unbudgeted: bool = False, extra: str = "") -> str:
    """This proxy's policy; `unbudgeted`: no [proxy] request_rate (bench/proxy_bench.py sends
    requests as fast as the proxy answers: past the default budget it would time 429s); `extra`:
    tables the stack's policy does not have (a [scope], say), appended."""
    budget = "request_rate = 0\n" if unbudgeted else ""
    return without_proxy_sections(policy_text()) + f"""
[proxy]
listen = "{directory / 'docker.sock'}"
group = "root"
upstream = "{DOCKER_SOCKET}"
{budget}
[proxy.users]
root = "default"
""" + extra


@contextlib.contextmanager
def running_proxy(code: Path | None = None, extra: str = "") -> Iterator[ProxyDaemon]:
    """The installed proxy; with `code` (a directory holding a gatekeeper package, e.g. an
    earlier commit's, for bench/proxy_bench.py --against) that package, run by the installed
    venv's interpreter; `extra`: policy tables added (proxy_policy)."""
    directory = Path(tempfile.mkdtemp(prefix="proxy-", dir=RUN_DIR))
    policy = directory / "policy.toml"
    # (an earlier commit's package from before the request budget would refuse the key as unknown)
    knows_budget = code is None or (code / "gatekeeper" / "proxy" / "request_rate.py").exists()
    policy.write_text(proxy_policy(directory, unbudgeted=knows_budget, extra=extra))
    with (directory / "proxy.log").open("wb") as log:
        isolation = ["-I"] if code is None else []  # without -I, `code` (the cwd) comes first on sys.path
        process = subprocess.Popen([str(VENV / "bin" / "python3"), *isolation, "-m", "gatekeeper", "proxy",
                                    "--policy", str(policy)], stdout=log, stderr=log, cwd=code)
        daemon = ProxyDaemon(directory, process)
        try:
            deadline = time.monotonic() + 20
            while not daemon.socket.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the proxy did not start: {daemon.log.read_text()}")
                time.sleep(0.1)
            yield daemon
        finally:
            process.terminate()
            process.wait(10)
