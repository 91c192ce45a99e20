"""Image labels remembered by content-addressed ID (gatekeeper.proxy.image_labels): the
ownership proof (objects.proven) asks the engine for an image only when its ID is new, and
decides as it would with the engine's answer. Each case beside its control."""

from __future__ import annotations

import pytest

from gatekeeper.proxy.image_labels import ImageLabels, image_of
from gatekeeper.proxy.vet import vet_api_request
from tests.api_engine import OWNER, FakeEngine, cid, container
from tests.test_proxy_vet import POLICY, request

IMAGE_ID = "sha256:" + cid("1")


class RememberingEngine(FakeEngine):
    """The fake engine with the proxy's memory beside it (as EngineNotAsked has it)."""

    def __init__(self, images: ImageLabels | None) -> None:
        super().__init__()
        self.images = images

    def image_labels_known(self, image: str) -> dict[str, str] | None:
        return self.images.known(image) if self.images is not None else None

    def get_json(self, target: str) -> tuple[int, object]:
        status, value = super().get_json(target)
        if self.images is not None:
            self.images.learn(target, status, value)
        return status, value


def image_questions(engine: FakeEngine) -> list[str]:
    return [target for target in engine.asked if target.startswith("/images/")]


@pytest.mark.parametrize(("word", "image", "allowed"), [
    ("web", "sha256:" + cid("2"), True),  # the agent's container of an image without labels
    ("mine-by-image", IMAGE_ID, False),  # its owner label came from its image: not proven
])  # fmt: skip
def test_a_remembered_image_is_not_asked_again_and_decides_the_same(word: str, image: str,
                                                                    allowed: bool) -> None:
    memory = ImageLabels()
    engine = RememberingEngine(memory)
    engine.containers.append(container(cid("7"), "mine-by-image", {OWNER: "default"}, image=IMAGE_ID))
    engine.containers[-1]["Config"]["Labels"].pop("gatekeeper.created")  # (the image's label alone)
    stop = request("POST", f"/v1.47/containers/{word}/stop")
    first = vet_api_request(stop, POLICY, engine)
    assert image_questions(engine) == [f"/images/{image}/json"]  # control: asked the first time
    again = vet_api_request(stop, POLICY, engine)
    assert image_questions(engine) == [f"/images/{image}/json"]  # not the second
    assert (first.allowed, first.rule) == (again.allowed, again.rule)
    assert first.allowed is allowed
    # Control: without the memory every decision asks.
    plain = RememberingEngine(None)
    plain.containers = engine.containers
    vet_api_request(stop, POLICY, plain)
    vet_api_request(stop, POLICY, plain)
    assert len(image_questions(plain)) == 2


@pytest.mark.parametrize(("target", "status", "answer", "kept"), [
    (f"/images/{IMAGE_ID}/json", 200, {"Id": IMAGE_ID, "Config": {"Labels": {"a": "b"}}}, True),  # control
    (f"/images/{IMAGE_ID}/json", 200, {"Id": IMAGE_ID, "Config": {"Labels": None}}, True),  # no labels: {}
    (f"/images/{IMAGE_ID}/json", 404, {"message": "no such image"}, False),
    (f"/images/{IMAGE_ID}/json", 200, {"Id": "sha256:" + cid("2"), "Config": {}}, False),  # another ID
    (f"/images/{IMAGE_ID}/json", 200, {"Id": IMAGE_ID, "Config": {"Labels": ["a=b"]}}, False),
    ("/images/myapp:latest/json", 200, {"Id": IMAGE_ID, "Config": {}}, False),  # a tag moves
    (f"/images/{IMAGE_ID[:19]}/json", 200, {"Id": IMAGE_ID, "Config": {}}, False),  # a prefix
    (f"/v1.47/images/{IMAGE_ID}/json", 200, {"Id": IMAGE_ID, "Config": {}}, False),
    (f"/images/{IMAGE_ID.upper()}/json", 200, {"Id": IMAGE_ID, "Config": {}}, False),
    (f"/containers/{IMAGE_ID}/json", 200, {"Id": IMAGE_ID, "Config": {}}, False),
])  # fmt: skip
def test_only_a_content_addressed_answer_is_learned(target: str, status: int, answer: object,
                                                    kept: bool) -> None:
    memory = ImageLabels()
    memory.learn(target, status, answer)
    assert (memory.known(IMAGE_ID) is not None) is kept


def test_labels_are_handed_out_as_copies() -> None:
    memory = ImageLabels()
    memory.learn(f"/images/{IMAGE_ID}/json", 200, {"Id": IMAGE_ID, "Config": {"Labels": {"a": "b"}}})
    labels = memory.known(IMAGE_ID)
    assert labels == {"a": "b"}
    labels["a"] = "changed"
    assert memory.known(IMAGE_ID) == {"a": "b"}
    assert image_of(f"/images/{IMAGE_ID}/json") == IMAGE_ID and image_of("/images/x/json") is None
