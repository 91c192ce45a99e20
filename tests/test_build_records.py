"""Build records (gatekeeper.build_records): an image is the agent's only when a record of its
profile names the image's ID, not because it carries the owner label.

The attack: the operator builds FROM the agent's image (`FROM ai-app:1` + `ENV DB_PASSWORD=...`,
or commits a container of it); the result inherits `gatekeeper.owner=<agent's profile>`. With the
label alone as proof the agent inspects it unredacted, runs it (reads the operator's files), removes
it, tags it, builds FROM it and takes its layers as build cache. Each table has the agent's own
image beside the heir (the control: the same command allowed), at both layers; the engines are the
fakes of tests/test_image_scope.py ("heir:1": labelled as the agent's, no record; "mine:1": the
agent's build, recorded; "mine-again:1": a re-tag of it, the same ID).
"""

from __future__ import annotations

import json

import pytest

from gatekeeper.build_records import built_image, record_name, worth_recording
from gatekeeper.decision import decide
from gatekeeper.owner import OWNER_LABEL, proven_image_labels
from gatekeeper.proxy.vet import (
    REDACT_ALWAYS,
    REDACT_BUILT,
    REDACT_LISTING,
    REDACT_OWNED_LISTING,
    transform_response,
    vet_api_request,
)
from gatekeeper.redaction import owned_by
from tests.test_build_add_url import context_tar
from tests.test_image_scope import APP, IMAGES, LENT, ApiImages, world
from tests.test_proxy_vet import OVERRIDES, make_policy, request

MINE = {OWNER_LABEL: "default"}
MINE_ID, HEIR_ID = IMAGES["mine:1"][0], IMAGES["heir:1"][0]

# ---------------------------------------------------------------- the one test, pure

# (what, labels, ID, IDs the records name, the owner label kept)
PROOFS = [
    ("the agent's build: label and record", MINE, MINE_ID, {MINE_ID}, True),
    ("a descendant: the label inherited, no record", MINE, HEIR_ID, {MINE_ID}, False),
    ("a missing record (built before records, or untagged)", MINE, MINE_ID, set(), False),
    ("a record alone, no label: nothing to keep", {}, MINE_ID, {MINE_ID}, False),
]


@pytest.mark.parametrize(("labels", "ident", "built", "kept"), [p[1:] for p in PROOFS],
                         ids=[p[0] for p in PROOFS])
def test_proven_image_labels(labels: dict[str, str], ident: str, built: set[str], kept: bool) -> None:
    assert (OWNER_LABEL in proven_image_labels(labels, ident, built)) is kept


# (what, an inspect or listing item, the IDs the records name, shown unredacted)
ITEMS = [
    ("the agent's image", {"Id": MINE_ID, "RepoTags": ["mine:1"], "Config": {"Labels": MINE}}, {MINE_ID},
     True),
    ("the heir", {"Id": HEIR_ID, "RepoTags": ["heir:1"], "Config": {"Labels": MINE}}, {MINE_ID}, False),
    ("the heir, listed", {"Id": HEIR_ID, "RepoTags": ["heir:1"], "Labels": MINE}, {MINE_ID}, False),
    ("no records known", {"Id": MINE_ID, "RepoTags": ["mine:1"], "Config": {"Labels": MINE}}, set(), False),
    ("a volume: its label as before", {"Name": "v", "Labels": MINE}, set(), True),
]


@pytest.mark.parametrize(("item", "built", "shown"), [i[1:] for i in ITEMS], ids=[i[0] for i in ITEMS])
def test_redaction_owns_only_recorded_images(item: dict[str, object], built: set[str], shown: bool) -> None:
    assert owned_by(item, "default", built) is shown


AUX = b'{"aux":{"ID":"%s"}}\r\n' % MINE_ID.encode()
QUIET = b'{"stream":"%s\\n"}\r\n' % MINE_ID.encode()  # q=1: the one line on success
ECHOED = b'{"stream":"%s\\n"}\r\n' % HEIR_ID.encode()  # RUN echo <the heir's ID>, streamed
STREAMS = [
    ("a classic build that succeeded",
     b'{"stream":"Step 2/2"}\r\n' + AUX + b'{"stream":"Successfully built"}\r\n', False, MINE_ID),
    ("no ID at all", b'{"stream":"Step 1/2"}\r\n', False, None),
    ("an error after the ID (the tag failed)", AUX + b'{"errorDetail":{"message":"x"}}\r\n', False, None),
    ("the last ID counts", b'{"aux":{"ID":"%s"}}\r\n' % HEIR_ID.encode() + AUX, False, MINE_ID),
    ("a malformed ID", b'{"aux":{"ID":"sha256:xyz"}}\r\n', False, None),
    ("a RUN step's output is escaped: no aux",
     b'{"stream":"{\\"aux\\":{\\"ID\\":\\"%s\\"}}\\n"}\r\n' % HEIR_ID.encode(), False, None),
    ("a quiet build's one line", QUIET, True, MINE_ID),
    ("an ID a RUN step printed, not quiet: not read", ECHOED + AUX, False, MINE_ID),
    ("... without aux", ECHOED, False, None),
]


@pytest.mark.parametrize(("tail", "quiet", "ident"), [s[1:] for s in STREAMS], ids=[s[0] for s in STREAMS])
def test_the_built_image_is_read_from_the_builds_own_answer(tail: bytes, quiet: bool,
                                                            ident: str | None) -> None:
    assert built_image(tail, quiet=quiet) == ident


STARTED = 1_800_000_000.5  # 2027-01-15T08:00:00.5Z
RECORDING = [
    ("made by this command", MINE, "2027-01-15T08:00:03.1Z", True),
    ("made in the second it started", MINE, "2027-01-15T08:00:00.9Z", True),
    ("older: a tag not rebuilt, or re-pointed meanwhile", MINE, "2027-01-15T07:59:59Z", False),
    ("not labelled as the agent's", {}, "2027-01-15T08:00:03Z", False),
    ("another profile's", {OWNER_LABEL: "bot"}, "2027-01-15T08:00:03Z", False),
    ("no date", MINE, "", False),
]


@pytest.mark.parametrize(("labels", "created", "recorded"), [r[1:] for r in RECORDING],
                         ids=[r[0] for r in RECORDING])
def test_the_cli_layer_records_only_what_the_build_made(labels: dict[str, str], created: str,
                                                        recorded: bool) -> None:
    assert worth_recording(labels, "default", created, STARTED) is recorded


def test_a_record_is_named_by_profile_and_image() -> None:
    assert record_name("default", MINE_ID).startswith("gatekeeper-built-")
    assert record_name("default", MINE_ID) != record_name("bot", MINE_ID) != record_name("default", HEIR_ID)


# ---------------------------------------------------------------- the CLI layer

# (command, Dockerfile of the build context, rule): the heir refused, the agent's own allowed
CLI = [
    ("docker rmi heir:1", "", "scope-owned"),
    ("docker run --rm heir:1 env", "", "image-not-shared"),
    ("docker create heir:1", "", "image-not-shared"),
    ("docker run --rm " + "7" * 12 + " env", "", "image-not-shared"),  # by short ID
    (f"docker build -t ai-x:1 {APP}", "FROM heir:1\n", "image-not-shared"),
    (f"docker build -t ai-x:1 {APP}", "FROM mine:1\nCOPY --from=heir:1 /secret /x\n", "image-not-shared"),
    (f"docker build --cache-from heir:1 -t ai-x:1 {APP}", "FROM mine:1\n", "image-not-shared"),
    ("docker rmi mine:1", "", ""),
    ("docker rmi mine-again:1", "", ""),  # the re-tag: the same ID, the same record
    ("docker run --rm mine:1 env", "", ""),
    ("docker run --rm mine-again:1 env", "", ""),
    (f"docker build -t ai-x:1 {APP}", "FROM mine:1\n", ""),
]


@pytest.mark.parametrize(("command", "dockerfile", "rule"), CLI, ids=[f"{c} | {d!r}" for c, d, _ in CLI])
def test_cli_layer_owns_only_recorded_images(command: str, dockerfile: str, rule: str) -> None:
    decision = decide(command, LENT, world(dockerfile or "FROM mine:1\n"))
    assert (decision.allowed, decision.rule if rule else "") == (rule == "", rule), decision.reason


def test_cli_layer_records_a_build_and_forgets_an_rmi() -> None:
    built = decide(f"docker build -t ai-x:1 -t ai-x:latest {APP}", LENT, world("FROM mine:1\n"))
    assert ("build-record", "ai-x:1", "ai-x:latest") in built.afterwards
    removed = decide("docker rmi mine:1", LENT, world())
    assert ("build-forget", MINE_ID) in removed.afterwards


def test_cli_layer_cache_sources_are_recorded_images_only() -> None:
    from tests.test_build_cache import Owning

    engine = Owning([MINE_ID, HEIR_ID], built=[MINE_ID], files={f"{APP}/Dockerfile": b"FROM mine:1\n"})
    argv = decide(f"docker build -t ai-x:1 {APP}", LENT, engine).argv
    assert f"--cache-from={MINE_ID}" in (argv or []) and f"--cache-from={HEIR_ID}" not in (argv or [])


# ---------------------------------------------------------------- the API layer


def api(method: str, target: str, body: str = "") -> object:
    return vet_api_request(request(method, target, body), LENT, ApiImages())


def api_build(dockerfile: str, query: str = "") -> object:
    req = request("POST", "/v1.47/build?t=ai-x%3A1" + query)
    req.body = context_tar({"Dockerfile": dockerfile}, compression="gz")
    return vet_api_request(req, LENT, ApiImages())


def create(image: str) -> object:
    return api("POST", "/v1.47/containers/create", json.dumps({"Image": image, "HostConfig": {}}))


API = [
    ("rmi the heir", lambda: api("DELETE", "/v1.47/images/heir:1"), "scope-owned"),
    ("create of the heir", lambda: create("heir:1"), "image-not-shared"),
    ("... by ID", lambda: create(HEIR_ID), "image-not-shared"),
    ("build FROM the heir", lambda: api_build("FROM heir:1\n"), "image-not-shared"),
    ("build COPY --from the heir", lambda: api_build("FROM mine:1\nCOPY --from=heir:1 /s /x\n"),
     "image-not-shared"),
    ("build cachefrom the heir", lambda: api_build("FROM mine:1\n", "&cachefrom=%5B%22heir%3A1%22%5D"),
     "image-not-shared"),
    ("control: rmi its own", lambda: api("DELETE", "/v1.47/images/mine:1"), "allowed"),
    ("control: rmi the re-tag", lambda: api("DELETE", "/v1.47/images/mine-again:1"), "allowed"),
    ("control: create of its own", lambda: create("mine:1"), "allowed"),
    ("control: build FROM its own", lambda: api_build("FROM mine:1\n"), "allowed"),
]


@pytest.mark.parametrize(("call", "rule"), [a[1:] for a in API], ids=[a[0] for a in API])
def test_api_layer_owns_only_recorded_images(call, rule: str) -> None:  # type: ignore[no-untyped-def]
    verdict = call()
    assert verdict.rule == rule, verdict.reason


def test_api_layer_inspect_of_the_heir_is_redacted_whatever_its_label() -> None:
    heir = api("GET", "/v1.47/images/heir:1/json")
    assert heir.allowed and heir.response.startswith(REDACT_ALWAYS + " ")
    mine = api("GET", "/v1.47/images/mine:1/json")
    assert mine.allowed and mine.response.startswith(f"{REDACT_BUILT} {MINE_ID} ")  # control


def test_api_layer_shows_only_the_proven_image_unredacted() -> None:
    """The decision proved one ID; an answer for another (the tag re-pointed) is redacted."""
    req = request("GET", "/v1.47/images/mine:1/json")
    transform = api("GET", "/v1.47/images/mine:1/json").response

    def answer(ident: str) -> bytes:
        return json.dumps({"Id": ident, "RepoTags": ["mine:1"],
                           "Config": {"Labels": MINE, "Env": ["DB_PASSWORD=s3cret"]}}).encode()
    assert b"s3cret" in transform_response(transform, 200, answer(MINE_ID), req)  # control: its own
    assert b"s3cret" not in transform_response(transform, 200, answer(HEIR_ID), req)


def test_api_layer_records_a_build_and_forgets_an_rmi() -> None:
    assert api_build("FROM mine:1\n").afterwards == ("build-record",)
    assert api_build("FROM mine:1\n", "&q=1").afterwards == ("build-record", "quiet")
    twice = api_build("FROM mine:1\n", "&q=0&q=1")  # the engine reads the first
    assert twice.afterwards == ("build-record",) or not twice.allowed, twice.rule
    assert api("DELETE", "/v1.47/images/mine:1").afterwards == ("build-forget", MINE_ID)


def test_api_layer_records_the_image_the_build_answered_with() -> None:
    from gatekeeper.proxy.pulls import take_step
    from tests.api_engine import FakeEngine, cid

    engine = FakeEngine()
    assert take_step(engine, "default", ("build-record", "sha256:" + cid("1"))) is None  # myapp: labelled
    assert engine.made[-1]["Labels"] == {"gatekeeper.built-by": "default",
                                         "gatekeeper.built-image": "sha256:" + cid("1")}
    warning = take_step(engine, "default", ("build-record", "sha256:" + cid("2")))  # postgres: not labelled
    assert warning is not None and "owner label" in warning


# ---------------------------------------------------------------- prune under the owner filter


def test_cli_layer_prune_refused_while_the_filter_selects_an_unrecorded_image() -> None:
    """The engine's owner filter selects the heir too: the prune would remove the operator's image."""
    from tests.test_build_cache import Owning

    heir_there = decide("docker image prune -f", LENT, Owning([MINE_ID, HEIR_ID], built=[MINE_ID]))
    assert (heir_there.allowed, heir_there.rule) == (False, "scope-owned"), heir_there.reason
    assert decide("docker image prune -f", LENT, Owning([MINE_ID])).allowed  # control: only its own


class HeirListed(ApiImages):
    """The API engine whose image listing under the owner filter also holds the heir."""

    def get_json(self, target: str) -> tuple[int, object]:
        if target.startswith("/images/json"):
            return 200, [{"Id": MINE_ID, "Labels": MINE}, {"Id": HEIR_ID, "Labels": MINE}]
        return super().get_json(target)


def test_api_layer_prune_refused_while_the_filter_selects_an_unrecorded_image() -> None:
    verdict = vet_api_request(request("POST", "/v1.47/images/prune"), LENT, HeirListed())
    assert verdict.rule == "scope-owned", verdict.reason
    control = vet_api_request(request("POST", "/v1.47/images/prune"), LENT, ApiImages())
    assert control.rule == "allowed", control.reason


# ---------------------------------------------------------------- lists under [scope] ... = "owned"

OWNED_SCOPE = make_policy({**OVERRIDES, "scope": {"ps": "owned", "images": "owned"}})
HEIR_LISTED = {"Id": HEIR_ID, "RepoTags": ["heir:1"], "Labels": {**MINE, "db_password": "pw"}}
MINE_LISTED = {"Id": MINE_ID, "RepoTags": ["mine:1"], "Labels": MINE}
OPERATORS = {"Id": "c-op", "Names": ["/db"], "State": "running", "Labels": {"db_password": "pw"}}
AGENTS = {"Id": "c-ai", "Names": ["/ai-app"], "State": "running",
          "Labels": {**MINE, "gatekeeper.created": "default"}}


def api_listed(policy: object, target: str, answer: object) -> tuple[str, object]:
    """The transform the decision names and the agent's view of the engine's `answer`."""
    verdict = vet_api_request(request("GET", target), policy, ApiImages())
    assert verdict.allowed, verdict.reason
    shown = transform_response(verdict.response, 200, json.dumps(answer).encode(), request("GET", target))
    return verdict.response, json.loads(shown)


def test_api_layer_owned_image_list_leaves_the_heir_out() -> None:
    """The engine's owner filter selects the heir: its tag named the operator's image to the agent."""
    response, shown = api_listed(OWNED_SCOPE, "/v1.47/images/json", [MINE_LISTED, HEIR_LISTED])
    assert response.startswith(f"{REDACT_OWNED_LISTING} images ") and MINE_ID in response
    assert [item["Id"] for item in shown] == [MINE_ID]
    response, shown = api_listed(LENT, "/v1.47/images/json", [MINE_LISTED, HEIR_LISTED])  # control: "all"
    assert response.startswith(REDACT_LISTING + " ")
    assert [item["Id"] for item in shown] == [MINE_ID, HEIR_ID] and shown[1]["Labels"]["db_password"] == "***"


def test_api_layer_owned_disk_usage_lists_only_the_callers_images_and_containers() -> None:
    """GET /system/df takes no filter: under "owned" the operator's containers and images go."""
    usage = {"Images": [MINE_LISTED, HEIR_LISTED], "Containers": [OPERATORS, AGENTS],
             "Volumes": [{"Name": "ops", "Labels": {"backup_password": "pw"}}], "BuildCache": None}
    response, shown = api_listed(OWNED_SCOPE, "/v1.47/system/df?verbose=1", usage)
    assert response.startswith(f"{REDACT_OWNED_LISTING} containers,images ")
    assert [item["Id"] for item in shown["Images"]] == [MINE_ID]
    assert [item["Id"] for item in shown["Containers"]] == ["c-ai"]
    assert shown["Volumes"][0]["Labels"]["backup_password"] == "***"
    _, shown = api_listed(LENT, "/v1.47/system/df?verbose=1", usage)  # control: "all"
    assert [item["Id"] for item in shown["Containers"]] == ["c-op", "c-ai"]


def test_api_layer_owned_listing_withholds_an_answer_that_is_no_list() -> None:
    verdict = vet_api_request(request("GET", "/v1.47/images/json"), OWNED_SCOPE, ApiImages())
    shown = transform_response(verdict.response, 200, b'{"password": "x"}', request("GET", "/x"))
    assert b"withheld" in shown and b'"x"' not in shown
