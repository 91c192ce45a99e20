"""Operator tools behind the proxy ask the engine itself (gatekeeper.operator.engine_host).

Behind `gatekeeper proxy`, [docker] host is the proxy's socket and the proxy answers 403
(rule api-user) to anyone not in [proxy.users], root included. `gatekeeper doctor` and
`gatekeeper check`, run as root, then learnt nothing (doctor's disk usage skipped, check
exit 69): they ask [proxy] upstream. Control in each test: a caller the proxy does serve
keeps asking through it, and here gets its 403.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from gatekeeper.operator.engine_host import operator_engine_host
from tests.fake_engine import RefusingHandler, fake_engine
from tests.test_check import DOCKER, EX_NOPERM, EX_UNAVAILABLE, check
from tests.test_disk_budget import DF

PROXY, ENGINE = "/run/gatekeeper/docker.sock", "/var/run/docker.sock"


def settings_with(host: str, users: dict[str, str]) -> dict[str, dict[str, object]]:
    return {"docker": {"host": host}, "proxy": {"listen": PROXY, "upstream": ENGINE, "users": users}}


# (docker.host, [proxy.users], caller, the engine asked)
CASES = [
    (f"unix://{PROXY}", {"ai-worker": "default"}, "root", f"unix://{ENGINE}"),  # served nothing: upstream
    (f"unix://{PROXY}", {}, "root", f"unix://{ENGINE}"),
    (f"unix://{PROXY}", {"ai-worker": "default"}, "ai-worker", f"unix://{PROXY}"),  # its profile's view
    (f"unix://{PROXY}", {"root": "ops"}, "root", f"unix://{PROXY}"),
    (f"unix://{ENGINE}", {}, "root", f"unix://{ENGINE}"),  # no proxy: docker.host
    ("unix:///run/other.sock", {}, "root", "unix:///run/other.sock"),
    ("tcp://127.0.0.1:2375", {}, "root", "tcp://127.0.0.1:2375"),
]


@pytest.mark.parametrize(("host", "users", "user", "asked"), CASES,
                         ids=[f"{case[0]}-{case[2]}-{len(case[1])}" for case in CASES])
def test_which_engine_an_operator_tool_asks(host: str, users: dict[str, str], user: str, asked: str) -> None:
    assert operator_engine_host(settings_with(host, users), user) == asked


def caller() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def behind_refusing_proxy(tmp_path: Path, engine_socket: str,
                          users: dict[str, str]) -> dict[str, dict[str, object]]:
    settings = settings_with(f"unix://{tmp_path}/proxy.sock", users)
    settings["proxy"].update(listen=f"{tmp_path}/proxy.sock", upstream=engine_socket)
    settings["limits"] = {"disk_budget": "100m"}
    return settings


def test_doctor_asks_the_upstream_for_disk_usage(tmp_path: Path) -> None:
    from gatekeeper.operator.doctor import Deployment, check_disk_usage

    with fake_engine(tmp_path, {"system/df": DF}) as engine, \
            fake_engine(tmp_path, {}, name="proxy.sock", handler=RefusingHandler) as proxy:  # type: ignore[dict-item]
        # control: a caller the proxy serves asks through it, and gets its 403
        served = behind_refusing_proxy(tmp_path, engine.server_address, {caller(): "default"})
        through = {check.name: check for check in check_disk_usage(Deployment(), served)}
        assert (through["disk usage"].status, proxy.requests) == ("skip", ["GET /system/df"])
        assert "HTTP 403" in through["disk usage"].detail
        assert engine.requests == []
        # the fix: anyone else (root) asks the engine
        checks = {check.name: check for check in check_disk_usage(Deployment(), behind_refusing_proxy(
            tmp_path, engine.server_address, {"ai-worker": "default"}))}
    assert engine.requests == ["GET /system/df"] and proxy.requests == ["GET /system/df"]
    assert checks["disk usage default"].status == "warn"
    assert checks["disk usage default"].detail.startswith(
        "100MB (images 70MB, volumes 20MB, build cache 10MB), at")


@pytest.mark.skipif(not Path(DOCKER).exists(), reason="the docker CLI is part of the test set-up")
def test_check_decides_ownership_from_the_upstream(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    objects = {"containers/db": {"Id": "b" * 64, "Name": "/db", "Image": "sha256:" + "c" * 64,
                                 "Config": {"Labels": {}}}}

    def policy(users: str) -> Path:
        path = tmp_path / "policy.toml"
        path.write_text(f'[docker]\nbinary = "{DOCKER}"\nworkdir = "{home}"\nconfig_dir = "{tmp_path}"\n'
                        f'host = "unix://{tmp_path}/proxy.sock"\n[paths]\nallowed_roots = ["{home}"]\n'
                        f'[proxy]\nlisten = "{tmp_path}/proxy.sock"\nupstream = "{tmp_path}/fake.sock"\n'
                        f'[proxy.users]\n{users}\n')
        return path

    with fake_engine(tmp_path, objects) as engine, \
            fake_engine(tmp_path, {}, name="proxy.sock", handler=RefusingHandler):
        # control: a caller in [proxy.users] asks the proxy, which refuses it: nothing decided
        served = check(policy(f'{caller()} = "default"'), "docker stop db")
        assert served.returncode == EX_UNAVAILABLE, (served.stdout, served.stderr)
        assert f"unix://{tmp_path}/proxy.sock" in served.stderr
        assert engine.requests == []
        decided = check(policy('ai-worker = "default"'), "--json", "docker stop db")
    assert decided.returncode == EX_NOPERM, decided.stderr
    assert json.loads(decided.stdout)["rule"] == "scope-owned"
    assert engine.requests
