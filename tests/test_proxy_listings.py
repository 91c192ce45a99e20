"""Listings at the API layer (gatekeeper.proxy.vet.redact_listing): the lists of containers,
images, volumes and networks carry every object's labels, which docker's `--format
'{{.Labels}}'` prints; the objects the caller does not own are answered with the values
under [redact] keys hidden, as their inspect is. The caller's own objects, and a list in
which no key could match, are the engine's answer byte for byte."""

from __future__ import annotations

import json

import pytest

from gatekeeper.proxy.vet import transform_response
from tests.test_proxy_vet import decide, request

OWNER, CREATED = "gatekeeper.owner", "gatekeeper.created"
MINE = {OWNER: "default", CREATED: "default"}


@pytest.mark.parametrize("target", [
    "/v1.47/containers/json?all=1", "/v1.47/images/json", "/v1.47/volumes", "/v1.47/networks",
    "/v1.47/networks/", "/v1.47/volumes?filters=%7B%22label%22%3A%7B%22x%22%3Atrue%7D%7D",
])
def test_every_listing_is_answered_redacted(target: str) -> None:
    verdict = decide("GET", target)
    assert verdict.allowed, verdict.reason
    assert (verdict.response or "").startswith("redact-listing ")


def listed(response: str, body: object) -> object:
    return json.loads(transform_response(response, 200, json.dumps(body).encode(), request("GET", "/x")))


@pytest.mark.parametrize(("target", "wrap"), [
    ("/v1.47/containers/json", lambda items: items),
    ("/v1.47/images/json", lambda items: [{k: v for k, v in i.items() if k != "State"} for i in items]),
    ("/v1.47/networks", lambda items: items),
    ("/v1.47/volumes", lambda items: {"Volumes": items, "Warnings": None}),
])
def test_foreign_label_values_are_hidden_and_the_callers_kept(target: str, wrap) -> None:  # type: ignore[no-untyped-def]
    response = decide("GET", target).response or ""
    theirs = {"Id": "a", "Name": "a", "State": "running", "Labels": {"backup.password": "pw", "team": "ops"}}
    mine = {"Id": "b", "Name": "b", "State": "running", "Labels": {**MINE, "api_token": "tok"}}
    control = wrap([theirs, mine])
    shown = listed(response, control)
    items = shown["Volumes"] if isinstance(shown, dict) else shown
    assert items[0]["Labels"] == {"backup.password": "***", "team": "ops"}
    assert items[1]["Labels"]["api_token"] == "tok"
    assert json.dumps(control).count('"pw"') == 1  # control: the engine's answer holds the value


def test_a_container_whose_owner_label_came_from_its_image_is_redacted() -> None:
    response = decide("GET", "/v1.47/containers/json").response or ""
    inherited = {"Id": "c", "State": "running", "Labels": {OWNER: "default", "db_password": "pw"}}
    assert listed(response, [inherited])[0]["Labels"]["db_password"] == "***"


def test_a_list_no_key_could_match_is_relayed_as_it_came() -> None:
    response = decide("GET", "/v1.47/containers/json").response or ""
    body = b'[{"Id":"a","State":"running","Labels":{"team":"ops"}}]\n'
    assert transform_response(response, 200, body, request("GET", "/x")) is body
    assert transform_response(response, 404, b"nope", request("GET", "/x")) == b"nope"


def test_an_answer_that_is_no_list_is_withheld() -> None:
    response = decide("GET", "/v1.47/containers/json").response or ""
    shown = transform_response(response, 200, b'{"password": "x"}', request("GET", "/x"))
    assert b"x\"" not in shown and b"withheld" in shown


def test_the_disk_usage_is_answered_redacted() -> None:
    """GET /system/df (`docker system df -v --format '{{json .}}'`) lists every image, container
    and volume with its labels: the ones not the caller's redacted, as their own lists are."""
    response = decide("GET", "/v1.47/system/df?verbose=1").response or ""
    assert response.startswith("redact-listing ")
    theirs = {"Id": "a", "State": "running", "Labels": {"backup.password": "pw", "team": "ops"}}
    mine = {"Id": "b", "State": "running", "Labels": {**MINE, "api_token": "tok"}}
    volume = {"Name": "ops", "Labels": {"backup_password": "pw-vol"}}
    control = {"LayersSize": 1, "Images": [{"Id": "i", "Labels": {"db.token": "pw-img"}}],
               "Containers": [theirs, mine], "Volumes": [volume], "BuildCache": None}
    shown = listed(response, control)
    assert isinstance(shown, dict)
    assert shown["Containers"][0]["Labels"] == {"backup.password": "***", "team": "ops"}
    assert shown["Containers"][1]["Labels"]["api_token"] == "tok"
    assert shown["Volumes"][0]["Labels"] == {"backup_password": "***"}
    assert shown["Images"][0]["Labels"] == {"db.token": "***"}
    assert (shown["LayersSize"], shown["BuildCache"]) == (1, None)
    assert all(secret in json.dumps(control) for secret in ('"pw"', "pw-vol", "pw-img"))  # control


def test_a_disk_usage_of_another_shape_is_withheld() -> None:
    response = decide("GET", "/v1.47/system/df").response or ""
    shown = transform_response(response, 200, b'{"Containers": {"password": "x"}}', request("GET", "/x"))
    assert b"x\"" not in shown and b"withheld" in shown


# GET /system/df: every container, image and volume with its labels (volumes with their driver
# options), and the build cache with each step's command line. Control: the engine's answer holds
# the values; the caller's own objects and the sizes come as the engine sent them.
DF = {
    "LayersSize": 1,
    "Images": [{"Id": "i1", "Labels": {"ci.api_token": "tok-img"}, "Size": 5},
               {"Id": "i2", "Labels": {OWNER: "default", "my_token": "mine-img"}, "Size": 6}],
    "Containers": [{"Id": "c1", "State": "running", "Labels": {"db.password": "pw-ctr"}, "SizeRw": 3},
                   {"Id": "c2", "State": "running", "Labels": {**MINE, "my_secret": "mine-ctr"}}],
    "Volumes": [{"Name": "nfs", "Labels": None, "Options": {"o": "addr=10.0.0.1,username=u,password=pw-vol"},
                 "UsageData": {"Size": 7, "RefCount": 1}}],
    "BuildCache": [{"ID": "b1", "Description": "mount / from exec /bin/sh -c echo $TOKEN_STEP", "Size": 9}],
}


def test_disk_usage_hides_the_operators_values_and_keeps_the_callers() -> None:
    response = decide("GET", "/v1.41/system/df").response or ""
    text = json.dumps(DF)
    for secret in ("tok-img", "pw-ctr", "pw-vol", "TOKEN_STEP"):
        assert secret in text  # control: the engine's answer holds each
    shown = listed(response, DF)
    out = json.dumps(shown)
    for secret in ("tok-img", "pw-ctr", "pw-vol", "TOKEN_STEP"):
        assert secret not in out, secret
    assert shown["Images"][1]["Labels"]["my_token"] == "mine-img"  # the caller's own image
    assert shown["Containers"][1]["Labels"]["my_secret"] == "mine-ctr"  # and container
    assert shown["Volumes"][0]["Options"]["o"] == "addr=10.0.0.1,username=u,password=***"
    assert (shown["LayersSize"], shown["Images"][0]["Size"], shown["BuildCache"][0]["Size"]) == (1, 5, 9)
    assert shown["Containers"][0]["SizeRw"] == 3 and shown["Volumes"][0]["UsageData"]["Size"] == 7


def test_disk_usage_of_an_engine_without_objects_is_relayed() -> None:
    response = decide("GET", "/v1.41/system/df").response or ""
    empty = {"LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": None}
    assert listed(response, empty) == empty
    body = json.dumps({"LayersSize": 0, "Images": None, "Containers": None, "Volumes": None}).encode()
    assert transform_response(response, 200, body, request("GET", "/x")) is body  # nothing to hide


OLD_SCAN_BODIES = [b'[{"Id": "a", "Labels": {"API_TOKEN": "x"}}]', b'[{"Id": "a", "Labels": {}}]',
                   b'[{"Env": ["A=1"]}]', b'[{"Description": "d"}]', b'[]', b'[{"Labels": {"PassWord": 1}}]']


@pytest.mark.parametrize("keys", [["token", "password"], ["Token"], ["s\u00e9cret"], [""], []])
@pytest.mark.parametrize("body", OLD_SCAN_BODIES)
def test_the_listing_scan_is_the_per_key_scan_it_replaced(keys: list[str], body: bytes) -> None:
    """One pattern over the lowered body says "parse it" exactly when the per-key scan did."""
    from gatekeeper.proxy.vet import listing_needles

    lowered = body.lower()
    old_passes = all(key.isascii() and key.encode() not in lowered for key in keys) \
        and b'"env"' not in lowered and b'"description"' not in lowered
    needles = listing_needles(json.dumps(keys))
    new_passes = needles is not None and needles.search(lowered) is None
    assert new_passes == old_passes
