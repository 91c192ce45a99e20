"""[limits] max_sessions: concurrent gatekeeper sessions per profile (issue 18 item 5).

Live sessions are claims ("session", PROFILE) in the real in-flight registry
(gatekeeper.inflight), held by their processes. The control: with no cap a
third session is allowed while two hold theirs; with max_sessions = 2 it is
refused, and allowed again once one of the two has ended. Other profiles'
sessions do not count.
"""

from __future__ import annotations

from pathlib import Path

from gatekeeper.decision import decide
from gatekeeper.inflight import Registry
from gatekeeper.policy import load_policy
from tests.fakes import StaticWorld


class RegistryWorld(StaticWorld):
    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry

    def claims_in_flight(self, policy: object) -> list[tuple[str, str]]:
        return self.registry.locked_claims()


def policy(tmp_path: Path, cap: int, profile: str | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / f"policy-{cap}.toml"
    path.write_text(f"[limits]\nmax_sessions = {cap}\n")
    return load_policy(str(path), profile)


def decide_as_session(tmp_path: Path, cap: int, state: Path, profile: str | None = None):  # type: ignore[no-untyped-def]
    registry = Registry(str(state))
    decision = decide("docker ps", policy(tmp_path, cap, profile), RegistryWorld(registry))
    registration = registry.settle(decision.claims if decision.allowed else None)
    return decision, registration


def test_sessions_per_profile(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, one = decide_as_session(tmp_path, 2, state)
    second, two = decide_as_session(tmp_path, 2, state)
    assert first.allowed and second.allowed and ("session", "default") in second.claims
    control, three = decide_as_session(tmp_path, 0, state)  # no cap: a third is allowed
    assert control.allowed and three is None
    refused, _ = decide_as_session(tmp_path, 2, state)
    assert (refused.allowed, refused.rule) == (False, "limit-sessions"), refused.reason
    other, four = decide_as_session(tmp_path, 2, state, "ci-bot")  # another profile's count
    assert other.allowed
    one.release()  # type: ignore[union-attr]
    again, five = decide_as_session(tmp_path, 2, state)
    assert again.allowed
    for registration in (two, four, five):
        registration.release()  # type: ignore[union-attr]


def test_no_registry_no_count(tmp_path: Path) -> None:
    """gatekeeper check has no registry: it counts no sessions."""
    assert decide("docker ps", policy(tmp_path, 1), StaticWorld()).allowed
