"""The OOM killer's order through real ssh and the real engine.

The engine (root) sets a container's oom_score_adj and may disable the OOM killer for its
cgroup: what the container's own processes could never do (lowering it takes
CAP_SYS_RESOURCE). With `--oom-score-adj -1000` the agent's container is the last one the
kernel kills under memory pressure: sshd, dockerd and the operator's services go first.

The control, in the same run: the agent's positive value (its container killed sooner, nobody's
loss but its own) reaches the container and reads back, so the flag travels through every layer.
The defence: the agent's negative value is refused by the layer itself, naming the rule
(flag-oom-score-adj; `--oom-kill-disable`: flag-oom-kill-disable), before the engine sees it:
with the refusal off the command would reach the engine, and no record would name the rule.
This machine's runc (a VM) fails any negative value itself ("can't get final child's PID"), so
root's -1000 cannot be shown granted here; on a stock host the engine grants it.
Three ways (tests/e2e/conftest.py THREE_WAY): the CLI layer and the proxy each refuse alone.
"""

from __future__ import annotations

import pytest

from .stack import IMAGE, Stack, audit_offset
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

READ_BACK = "cat /proc/self/oom_score_adj"


def test_a_negative_oom_score_is_refused_to_the_agent(stack: Stack) -> None:
    allowed = stack.ssh(f"docker run --rm --oom-score-adj 500 {IMAGE} {READ_BACK}", timeout=60)
    assert allowed.returncode == 0, allowed.stderr  # control: the flag reaches the container
    assert allowed.stdout.strip() == b"500"
    for value in ("-1000", "-1"):
        since = audit_offset()
        refused = stack.ssh(f"docker run --rm --oom-score-adj {value} {IMAGE} {READ_BACK}", timeout=60)
        assert_refused(stack, refused, since, rule="flag-oom-score-adj")
        assert not refused.stdout.strip()


def test_disabling_the_oom_killer_is_refused(stack: Stack) -> None:
    since = audit_offset()
    refused = stack.ssh(f"docker run --rm -m 64m --oom-kill-disable {IMAGE} true", timeout=60)
    assert_refused(stack, refused, since, rule="flag-oom-kill-disable")
