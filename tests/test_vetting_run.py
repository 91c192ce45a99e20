"""docker run/create/start: the corpus (tests/corpus/run.txt), the issue's
"trying to cheat" list with the flag named in every refusal, and the exact
argv docker gets when a host path is rewritten to its resolved form."""

# One case per line keeps each command beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.decision import decide
from gatekeeper.grammar import spec
from gatekeeper.grammar.build_flags import BUILD
from gatekeeper.grammar.docker_flags import FLAGS
from gatekeeper.policy import load_policy
from gatekeeper.vetting.flag_checks import SPECIAL_CHECKS
from tests.conftest import names_default
from tests.corpus_loader import Case, corpus_params, load_corpus
from tests.fakes import StaticWorld
from tests.owner_label import without_owner_label


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return names_default(load_policy(None))  # the corpus is decided under the deployed default


@pytest.mark.parametrize("case", corpus_params("run.txt"))
def test_run_corpus(case: Case, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(case.command, policy, StaticWorld())
    assert decision.as_dict()["decision"] == case.expected, decision.reason
    if case.rule != "*":
        assert decision.rule == case.rule, decision.reason


# (command, the flag spelling the refusal must name)
TRYING_TO_CHEAT = [
    ("docker run -v/:/h img", "-v"),
    ("docker run -itv /:/h img", "-v"),
    ("docker run -v=/:/h img", "-v"),
    ("docker run --volume=/:/h img", "--volume"),
    ("docker run -v /home/ai-worker/.ssh:/s img", "-v"),
    ("docker run -v ./../..:/h img", "-v"),
    ("docker run --mount type=bind,src=/,dst=/h img", "--mount"),
    ("docker run --mount 'type=bind,\"src=/\",dst=/h' img", "--mount"),
    ("docker run --mount TYPE=bind,SRC=/,dst=/h img", "--mount"),
    (
        "docker run --mount type=volume,dst=/h,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/ img",
        "--mount",
    ),
    ("docker run --privileged=true img", "--privileged"),
    ("docker run --privileged=1 img", "--privileged"),
    ("docker run --privileged false img", "--privileged"),
    ("docker run --privileged=false --privileged img", "--privileged"),
    ("docker run --pid=host img", "--pid"),
    ("docker run --net=host img", "--net"),
    ("docker run --network=container:x img", "--network"),
    ("docker run --security-opt seccomp=unconfined img", "--security-opt"),
    ("docker run --security-opt seccomp:unconfined img", "--security-opt"),
    ("docker run --security-opt no-new-privileges=false img", "--security-opt"),
    ("docker run --sysctl kernel.core_pattern=x img", "--sysctl"),
    ("docker run --userns=host img", "--userns"),
    ("docker start web -a", "-a"),
]


@pytest.mark.parametrize(("command", "flag"), TRYING_TO_CHEAT, ids=[c for c, _ in TRYING_TO_CHEAT])
def test_trying_to_cheat_is_denied_naming_the_flag(command: str, flag: str, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, StaticWorld())
    assert not decision.allowed
    assert decision.reason.startswith(flag + " ") or decision.reason.startswith(flag + ":")
    assert decision.argv is None


# (command, argv docker runs): host paths resolved, everything else as written
REWRITES = [
    (
        "docker run -v ./work/data:/data img",
        ["docker", "run", "--cap-drop=NET_RAW", "--volume=/home/ai-worker/work/data:/data", "img"],
    ),
    (
        "docker run -itv ./work/../work/x/..:/w:ro img",
        ["docker", "run", "--cap-drop=NET_RAW", "-it", "--volume=/home/ai-worker/work:/w:ro", "img"],
    ),
    ("docker run -v ai-data:/data img ls", ["docker", "run", "--cap-drop=NET_RAW", "-v", "ai-data:/data", "img", "ls"]),
    (
        "docker run --rm -v /home/ai-worker/work/data:/data img ls /data",
        ["docker", "run", "--cap-drop=NET_RAW", "--rm", "-v", "/home/ai-worker/work/data:/data", "img", "ls", "/data"],
    ),
    (
        "docker run --mount type=bind,src=./work,dst=/w,readonly img",
        ["docker", "run", "--cap-drop=NET_RAW", "--mount=type=bind,dst=/w,readonly,source=/home/ai-worker/work", "img"],
    ),
    (
        "docker run --mount 'type=bind,\"target=/a,b\",SRC=./work' img",
        ["docker", "run", "--cap-drop=NET_RAW", '--mount=type=bind,"target=/a,b",source=/home/ai-worker/work', "img"],
    ),
    (
        "docker run --mount type=bind,src=/,src=/home/ai-worker/work,dst=/w img",
        ["docker", "run", "--cap-drop=NET_RAW", "--mount=type=bind,dst=/w,source=/home/ai-worker/work", "img"],
    ),
    (
        "docker run --env-file work/app.env --cidfile=work/cid img",
        [
            "docker",
            "run",
            "--cap-drop=NET_RAW",
            "--env-file=/home/ai-worker/work/app.env",
            "--cidfile=/home/ai-worker/work/cid",
            "img",
        ],
    ),
    (
        "docker create -v ./work:/w img -v /:/h",
        ["docker", "create", "--cap-drop=NET_RAW", "--volume=/home/ai-worker/work:/w", "img", "-v", "/:/h"],
    ),
]


@pytest.mark.parametrize(("command", "argv"), REWRITES, ids=[c for c, _ in REWRITES])
def test_host_paths_reach_docker_resolved(command: str, argv: list[str], policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, StaticWorld())
    assert decision.allowed, decision.reason
    assert without_owner_label(decision.argv) == argv


def test_symlinked_source_is_passed_resolved(policy) -> None:  # type: ignore[no-untyped-def]
    world = StaticWorld({"/home/ai-worker/data": "/home/ai-worker/work/real"})
    decision = decide("docker run -v /home/ai-worker/data:/d img", policy, world)
    assert without_owner_label(decision.argv) == ["docker", "run", "--cap-drop=NET_RAW", "--volume=/home/ai-worker/work/real:/d", "img"]


def test_symlink_to_host_root_is_denied(policy) -> None:  # type: ignore[no-untyped-def]
    world = StaticWorld({"/home/ai-worker/work/root": "/"})
    decision = decide("docker run -v /home/ai-worker/work/root:/h img", policy, world)
    assert (decision.allowed, decision.rule) == (False, "host-path")
    assert "'/'" in decision.reason  # the resolved path is shown


def test_resolved_path_with_a_colon_is_refused(policy) -> None:  # type: ignore[no-untyped-def]
    # ':' in the resolved source would make the daemon split the spec elsewhere
    world = StaticWorld({"/home/ai-worker/work/x": "/home/ai-worker/work/a:b"})
    decision = decide("docker run -v /home/ai-worker/work/x:/h img", policy, world)
    assert (decision.allowed, decision.rule) == (False, "flag-volume")


def test_run_corpus_is_large_and_two_sided() -> None:
    cases = load_corpus("run.txt")
    assert len(cases) >= 200
    assert {c.expected for c in cases} == {"allow", "deny"}


def flags_with_check(check: str) -> set[str]:
    tables = [*FLAGS.values(), BUILD]
    return {flag.long for table in tables for flag in table.values() if flag.check == check}


@pytest.mark.parametrize("check", sorted(SPECIAL_CHECKS))
def test_every_special_check_has_deny_samples(check: str) -> None:
    """A meta-test: each special check is exercised by at least one refusal it makes."""
    from tests.test_addresses import CLI_CASES  # network create: not in the default policy

    cases = load_corpus("run.txt") + load_corpus("build.txt")
    rules = {c.rule for c in cases if c.expected == "deny"}
    rules |= {rule for _, *outcomes in CLI_CASES.values() for rule in outcomes}
    assert rules & {f"flag-{name}" for name in flags_with_check(check)}, check


def test_every_check_name_is_implemented() -> None:
    from gatekeeper.vetting import PLAIN_CHECKS, flag_check

    assert set(PLAIN_CHECKS) | set(SPECIAL_CHECKS) == spec.CHECKS
    assert not set(PLAIN_CHECKS) & set(SPECIAL_CHECKS)
    assert all(flag_check(name) is not None for name in spec.CHECKS)
    assert flag_check("no-such-check") is None


# Properties: any value of a special flag is decided without crashing, and
# what docker gets after a rewrite is a fixpoint (vetting it again changes nothing).

SPECIAL_FLAGS = [
    "run -v", "run --mount", "run --security-opt", "run --pid", "run --network", "run --sysctl",
    "build -o", "build --secret", "build --build-context", "build --cache-to", "build --cache-from",
]  # fmt: skip

VALUE_PIECES = st.sampled_from([
    "/", ".", "..", "./work", "work", "/home/ai-worker/work", "/etc", ".ssh", "type=", "bind", "volume",
    "src=", "dst=", "dest=", "source=", "target=", "local", "image", "push=true", "id=", ",", ":", "=",
    '"', "host", "container:", "ro", "z", "data", "-", "~", "c:", "name=", "seccomp", "unconfined",
])  # fmt: skip


def as_command(words: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(word) for word in words)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SPECIAL_FLAGS), st.lists(VALUE_PIECES, min_size=1, max_size=8).map("".join))
def test_special_values_never_crash_and_rewrites_are_fixpoints(flag: str, value: str) -> None:
    policy = load_policy(None)
    command, name = flag.split()
    tail = ["img"] if command == "run" else ["work/app"]
    decision = decide(as_command(["docker", command, name, value, *tail]), policy, StaticWorld())
    if not decision.allowed:
        assert decision.rule and decision.reason
        return
    argv = without_owner_label(decision.argv)  # the agent may not write the owner label itself
    again = decide(as_command(argv), policy, StaticWorld())
    assert again.allowed, again.reason
    assert without_owner_label(again.argv) == argv


# CAP_NET_RAW (docker's default set) sends any frame: a gratuitous ARP claiming another
# container's address takes its traffic (red team s4; e2e: test_operator_leaks.py).
NET_RAW_DROPS = {
    "docker run img": ["--cap-drop=NET_RAW"],
    "docker container create --cap-drop MKNOD img": ["--cap-drop=NET_RAW", "--cap-drop", "MKNOD"],
    "docker run --cap-drop net_raw img": ["--cap-drop", "net_raw"],
    "docker run --cap-drop=CAP_NET_RAW img": ["--cap-drop=CAP_NET_RAW"],
    "docker run --cap-drop all img": ["--cap-drop", "all"],
}


@pytest.mark.parametrize(("command", "drops"), NET_RAW_DROPS.items(), ids=NET_RAW_DROPS.keys())
def test_net_raw_is_dropped(command: str, drops: list[str], policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, StaticWorld())
    assert decision.allowed, decision.reason
    argv = without_owner_label(decision.argv)
    assert [word for word in argv if "cap" in word.lower() or word.upper().endswith(("RAW", "MKNOD", "ALL"))] \
        == drops
    again = decide(" ".join(argv), policy, StaticWorld())  # a fixpoint: vetted again, nothing added
    assert without_owner_label(again.argv) == argv


@pytest.mark.parametrize(("given", "sent"), [
    (None, ["NET_RAW"]), (["CHOWN"], ["CHOWN", "NET_RAW"]), (["cap_net_raw"], ["cap_net_raw"]), (["ALL"], ["ALL"]),
])
def test_compose_services_drop_net_raw(given: list[str] | None, sent: list[str]) -> None:
    from gatekeeper.errors import Denied
    from gatekeeper.vetting.run import drop_model_capabilities

    service: dict[str, object] = {"image": "img"} if given is None else {"image": "img", "cap_drop": given}
    model = {"services": {"s": service}}
    drop_model_capabilities(model)
    assert service["cap_drop"] == sent
    with pytest.raises(Denied):
        drop_model_capabilities({"services": {"s": {"cap_drop": "NET_RAW"}}})
