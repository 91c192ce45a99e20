"""Bench: the proxy's own CPU per `docker ps` and per `docker inspect`, without the engine or the CLI.

`gatekeeper proxy --policy FILE` of one or more trees (this one, and --against REV), each its own
process, in front of a fake engine (its own process: canned dockerd answers, an owned container
with its image), driven by the requests the docker CLI sends (`HEAD /_ping`, then `GET
/v1.41/containers/json` or `GET /v1.41/containers/NAME/json`, a new connection each), the
exchanges GAP ms apart (cold caches, as between two CLI calls). The proxy's CPU is read from
/proc/PID/task/*/schedstat around every exchange; the trees take turns exchange by exchange.
Needs no engine and no lock; CPU medians are steady enough on a loaded machine to compare trees
(`--valgrind`: one tree under callgrind, instruction counts, noise-free):

    .venv/bin/python bench/proxy_cpu.py [--rounds N] [--gap MS] [--against REV ...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OWNED = "ai-bench-own"
IMAGE_ID = "sha256:" + "ab" * 32
CONTAINER_ID = "c0ffee" * 10 + "abcd"
PS = (b"HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Docker-Client/28.2.2 (linux)\r\n\r\n",
      b"GET /v1.41/containers/json HTTP/1.1\r\nHost: api.moby.localhost\r\n"
      b"User-Agent: Docker-Client/28.2.2 (linux)\r\n\r\n")
INSPECT = (PS[0], b"GET /v1.41/containers/" + OWNED.encode() + b"/json HTTP/1.1\r\n"
           b"Host: api.moby.localhost\r\nUser-Agent: Docker-Client/28.2.2 (linux)\r\n\r\n")


def container() -> dict[str, object]:
    labels = {"gatekeeper.owner": "default", "gatekeeper.created": "default"}
    return {"Id": CONTAINER_ID, "Created": "2026-11-30T10:00:00.000000000Z", "Path": "sleep",
            "Args": ["3600"],
            "State": {"Status": "running", "Running": True, "Paused": False, "Restarting": False,
                      "OOMKilled": False, "Dead": False, "Pid": 4242, "ExitCode": 0, "Error": "",
                      "StartedAt": "2026-11-30T10:00:00.5Z", "FinishedAt": "0001-01-01T00:00:00Z"},
            "Image": IMAGE_ID, "ResolvConfPath": f"/var/lib/docker/containers/{CONTAINER_ID}/resolv.conf",
            "HostnamePath": f"/var/lib/docker/containers/{CONTAINER_ID}/hostname",
            "LogPath": f"/var/lib/docker/containers/{CONTAINER_ID}/{CONTAINER_ID}-json.log",
            "Name": "/" + OWNED, "RestartCount": 0, "Driver": "overlay2", "Platform": "linux",
            "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
            "HostConfig": {"Binds": None, "NetworkMode": "default", "PortBindings": {}, "AutoRemove": False,
                           "CapAdd": None, "CapDrop": ["ALL"], "Privileged": False, "ReadonlyRootfs": False,
                           "SecurityOpt": ["no-new-privileges"], "Memory": 0, "NanoCpus": 0,
                           "PidsLimit": None, "Runtime": "runc", "Init": None, "LogConfig":
                           {"Type": "json-file", "Config": {}}},
            "GraphDriver": {"Data": {"LowerDir": "/var/lib/docker/overlay2/x-init/diff",
                                     "MergedDir": "/var/lib/docker/overlay2/x/merged"}, "Name": "overlay2"},
            "Mounts": [],
            "Config": {"Hostname": "c0ffeec0ffee", "User": "", "Tty": False, "Env": ["PATH=/bin"],
                       "Cmd": ["sleep", "3600"], "Image": "gk-busybox", "WorkingDir": "", "Entrypoint": None,
                       "Labels": labels},
            "NetworkSettings": {"Bridge": "", "SandboxID": "5" * 64, "Ports": {}, "Gateway": "172.17.0.1",
                                "IPAddress": "172.17.0.2", "IPPrefixLen": 16,
                                "MacAddress": "02:42:ac:11:00:02",
                                "Networks": {"bridge": {"NetworkID": "6" * 64, "EndpointID": "7" * 64,
                                                        "Gateway": "172.17.0.1", "IPAddress": "172.17.0.2"}}}}


def listing() -> list[dict[str, object]]:
    return [{"Id": CONTAINER_ID, "Names": ["/" + OWNED], "Image": "gk-busybox", "ImageID": IMAGE_ID,
             "Command": "sleep 3600", "Created": 1764496800, "Ports": [],
             "Labels": {"gatekeeper.owner": "default", "gatekeeper.created": "default"},
             "State": "running", "Status": "Up 2 hours", "HostConfig": {"NetworkMode": "default"},
             "NetworkSettings": {"Networks": {}}, "Mounts": []}]


def engine_answers() -> dict[tuple[str, str], tuple[int, bytes]]:
    inspect = json.dumps(container()).encode() + b"\n"
    image = json.dumps({"Id": IMAGE_ID, "RepoTags": ["gk-busybox:latest"],
                        "Config": {"Labels": None}}).encode()
    answers = {("GET", "/_ping"): (200, b"OK"), ("HEAD", "/_ping"): (200, b""),
               ("GET", "/containers/json"): (200, json.dumps(listing()).encode() + b"\n"),
               ("GET", f"/containers/{OWNED}/json"): (200, inspect),
               ("GET", f"/containers/{CONTAINER_ID}/json"): (200, inspect),
               ("GET", f"/images/{IMAGE_ID}/json"): (200, image + b"\n")}
    return answers


FAKE_ENGINE = r'''
import asyncio, json, sys, time
answers = {tuple(k.split(" ", 1)): (s, b.encode("latin-1")) for k, (s, b) in json.loads(sys.argv[2]).items()}
async def serve(reader, writer):
    buffer = b""
    try:
        while True:
            while b"\r\n\r\n" not in buffer:
                data = await reader.read(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            method, target = head.split(b" ", 2)[:2]
            path = target.decode().partition("?")[0]
            if path.startswith("/v1."):
                path = "/" + path.split("/", 2)[2]
            status, body = answers.get((method.decode(), path), (404, b'{"message":"no such thing"}'))
            head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\nApi-Version: 1.41\r\n"
                    "Content-Type: application/json\r\nDocker-Experimental: false\r\nOstype: linux\r\n"
                    "Server: Docker/20.10.24+dfsg1 (linux)\r\n"
                    f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n")
            if path == "/_ping":
                head += "Cache-Control: no-cache, no-store, must-revalidate\r\nPragma: no-cache\r\n"
            head += f"Content-Length: {len(body) if method != b'HEAD' else 0}\r\n\r\n"
            writer.write(head.encode() + (body if method != b"HEAD" else b""))
    finally:
        writer.close()
async def main():
    server = await asyncio.start_unix_server(serve, sys.argv[1])
    async with server:
        await server.serve_forever()
asyncio.run(main())
'''


def policy(directory: Path, upstream: Path, listen: Path) -> Path:
    path = directory / f"policy-{listen.stem}.toml"
    log = directory / f"{listen.stem}-audit.log"
    log.touch(mode=0o600)  # (the proxy appends to a log the deployment made)
    path.write_text(f"""\
[docker]
binary = "/usr/bin/docker"

[audit]
path = "{log}"
syslog = false

[proxy]
listen = "{listen}"
group = "root"
upstream = "{upstream}"
request_rate = 0

[proxy.users]
root = "default"
""")
    return path


def package(rev: str, directory: Path) -> Path:
    where = directory / f"tree-{rev}"
    where.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "gatekeeper"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def start_proxy(code: Path, policy_file: Path, listen: Path, valgrind: str | None,
                profile: str | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gatekeeper", "proxy", "--policy", str(policy_file)]
    if profile:
        # cProfile on the thread's CPU clock: a write that wakes the client is not the proxy's time
        command[1:3] = ["-c", "import cProfile, runpy, sys, time; sys.argv[0] = 'gatekeeper'; "
                        "p = cProfile.Profile(time.thread_time); p.enable(); "
                        "exec('try: runpy.run_module(\\'gatekeeper\\', run_name=\\'__main__\\')\\n"
                        "except SystemExit: pass'); "
                        f"p.disable(); p.dump_stats({profile!r})"]
    if valgrind:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={valgrind}", *command]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(code)}
    process = subprocess.Popen(command, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    deadline = time.monotonic() + (120 if valgrind else 20)
    while not listen.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the proxy of {code} did not start")
        time.sleep(0.05)
    return process


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` so far, in nanoseconds (schedstat: time on the CPU)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a worker thread that ended meanwhile
    return total


def read_answer(sock: socket.socket, head_only: bool) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"not allowed: {data!r}; see {sock.getpeername()}'s audit log")
    if head_only:
        return
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)


def exchange(path: Path, requests: tuple[bytes, ...]) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        for request in requests:
            sock.sendall(request)
            read_answer(sock, request.startswith(b"HEAD"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--gap", type=float, default=10.0, help="ms between exchanges")
    parser.add_argument("--against", action="append", default=[], metavar="REV")
    parser.add_argument("--valgrind", metavar="OUT", help="this tree's proxy under callgrind, writing OUT")
    parser.add_argument("--profile", metavar="OUT", help="this tree's proxy under cProfile, writing OUT")
    parser.add_argument("--only", choices=("ps", "inspect"))
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gk-proxy-cpu-") as temporary:
        directory = Path(temporary)
        upstream = directory / "engine.sock"
        answers = {f"{m} {p}": (s, b.decode("latin-1")) for (m, p), (s, b) in engine_answers().items()}
        engine = subprocess.Popen([sys.executable, "-c", FAKE_ENGINE, str(upstream), json.dumps(answers)])
        trees = [("this", REPO), *((rev, package(rev, directory)) for rev in options.against)]
        proxies = []
        try:
            while not upstream.exists():
                time.sleep(0.05)
            for name, code in trees:
                listen = directory / f"{name}.sock"
                proxies.append((name, listen, start_proxy(code, policy(directory, upstream, listen), listen,
                                                          options.valgrind if name == "this" else None,
                                                          options.profile if name == "this" else None)))
            for label, requests in (("ps", PS), ("inspect", INSPECT)):
                if options.only and label != options.only:
                    continue
                spent: dict[str, list[int]] = {name: [] for name, _, _ in proxies}
                for n in range(options.rounds + 5):
                    order = proxies[n % len(proxies):] + proxies[:n % len(proxies)]
                    for name, listen, process in order:
                        before = cpu_ns(process.pid)
                        exchange(listen, requests)
                        time.sleep(options.gap / 1000)
                        if n >= 5:
                            spent[name].append(cpu_ns(process.pid) - before)
                print(label, "  ".join(f"{name}: {statistics.median(v) / 1000:.0f} us "
                                       f"(q1 {statistics.quantiles(v)[0] / 1000:.0f}, "
                                       f"q3 {statistics.quantiles(v)[2] / 1000:.0f})"
                                       for name, v in spent.items()))
        finally:
            for _, _, process in proxies:
                process.terminate()
                process.wait()
            engine.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
