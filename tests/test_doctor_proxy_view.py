"""`gatekeeper doctor`, "proxy view": the proxy's unit must not give it a private or hidden
tree where an allowed root lies (PrivateTmp and a root under /tmp, ProtectHome=yes and /home,
InaccessiblePaths, TemporaryFileSystem), else it resolves bind sources in another file system
than the one the engine mounts them from. The shipped unit passes with a root under /tmp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gatekeeper.operator import doctor
from gatekeeper.operator.doctor import FAIL, OK
from tests.e2e.stack import PROXY_UNIT_SOURCE
from tests.test_doctor import build, diagnose

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the deployment's files must be root-owned")


def with_unit(root: Path, text: str, roots: str = '["/home/ai-worker"]', dropin: str = "") -> Path:
    build(root)
    policy = root / "etc/gatekeeper/policy.toml"
    content = policy.read_text().replace('allowed_roots = ["/home/ai-worker"]', f"allowed_roots = {roots}")
    policy.write_text(content)
    from gatekeeper.policy import compile_policy

    compile_policy(str(policy))
    unit = root / "etc/systemd/system/gatekeeper-proxy.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(text)
    if dropin:
        (root / "etc/systemd/system/gatekeeper-proxy.service.d").mkdir()
        (root / "etc/systemd/system/gatekeeper-proxy.service.d/override.conf").write_text(dropin)
    return root


def view(root: Path) -> list[doctor.Check]:
    return [check for check in diagnose(root) if check.name == "proxy view"]


SHIPPED = PROXY_UNIT_SOURCE.read_text()
PRIVATE_TMP = SHIPPED.replace("[Service]\n", "[Service]\nPrivateTmp=yes\n")


@pytest.mark.parametrize(("unit", "roots", "dropin", "fails"), [
    (SHIPPED, '["/tmp/agent"]', "", False),                   # the shipped unit shares /tmp
    (PRIVATE_TMP, '["/home/ai-worker"]', "", False),         # control: nothing under /tmp
    (PRIVATE_TMP, '["/tmp/agent"]', "", True),
    (PRIVATE_TMP, '["/var/tmp/agent"]', "", True),
    (SHIPPED, '["/tmp/agent"]', "[Service]\nPrivateTmp=true\n", True),  # a drop-in adds it
    (PRIVATE_TMP, '["/tmp/agent"]', "[Service]\nPrivateTmp=no\n", False),  # a drop-in lifts it
    (SHIPPED.replace("ProtectHome=read-only", "ProtectHome=tmpfs"), '["/home/ai-worker"]', "", True),
    (SHIPPED, '["/srv/agent"]', "[Service]\nInaccessiblePaths=-/srv\n", True),
    (SHIPPED, '["/srv/agent"]', "[Service]\nTemporaryFileSystem=/srv:ro\n", True),
    (SHIPPED, '["/srvx/agent"]', "[Service]\nInaccessiblePaths=/srv\n", False),  # a prefix, not a parent
])
def test_a_unit_hiding_an_allowed_root_fails(tmp_path: Path, unit: str, roots: str, dropin: str,
                                             fails: bool) -> None:
    (check,) = view(with_unit(tmp_path, unit, roots, dropin))
    assert check.status == (FAIL if fails else OK), check.line()


def test_no_unit_installed_no_check(tmp_path: Path) -> None:
    assert view(build(tmp_path)) == []
