"""`gatekeeper policy suggest`: from a log's denials, the smallest change that allows the
everyday work; never a must-deny class; each proposal checked and replayed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.operator import suggest
from gatekeeper.policy import load_policy

LOG = Path(__file__).parent / "fixtures" / "suggest" / "audit.jsonl"
POLICY = '[ports]\nhost_ports = ["8000-8999"]\n[images]\nallowed = ["docker.io/library/*"]\n'


@pytest.fixture
def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    return str(path)


def test_proposes_only_the_everyday_fixes(policy_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert suggest.main(["--log", str(LOG), "--policy", policy_file]) == 0
    out = capsys.readouterr().out
    proposed = [line for line in out.splitlines() if line.startswith("[") and "+=" in line]
    assert proposed == [
        '[images] allowed += "ghcr.io/acme/api"   # 1 denial(s), e.g. \'docker pull ghcr.io/acme/api:2\'',
        '[ports] host_ports += "9090"   # 1 denial(s), e.g. \'docker run -d -p 127.0.0.1:9090:80 nginx\'',
    ]
    assert "not proposed: [commands] allowed += \"container pause\"" in out  # no grammar: would not help
    assert "2 deny→allow" in out  # replayed over the same log
    for never in ("privileged", "/etc", "exec", "0.0.0.0", "8080"):  # noqa: S104
        assert all(never not in line for line in proposed)


def test_a_proposal_letting_a_must_deny_case_through_is_dropped(
        policy_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy(policy_file)
    proposals = suggest.propose(policy, suggest.decision_records(str(LOG), None))
    kept, dropped = suggest.screened(policy, proposals)
    assert [p.value for p in kept] == ["ghcr.io/acme/api", "9090"]  # control: the real suite passes them
    monkeypatch.setattr(suggest, "must_deny_escapes", lambda candidate: ["docker run --privileged busybox"])
    kept, dropped = suggest.screened(policy, proposals)
    assert kept == []
    assert any("must-deny case through" in why for _, why in dropped)


def test_profile_filter(policy_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert suggest.main(["--log", str(LOG), "--policy", policy_file, "--profile", "someone-else"]) == 0
    assert "nothing to propose from 0 denials" in capsys.readouterr().out
