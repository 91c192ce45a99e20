# One case per line keeps each YAML beside its expectation; such lines run long.
# ruff: noqa: E501

"""include/extends references are found however the YAML spells them, and
files that cannot reference anything are not parsed at all."""

from __future__ import annotations

import pytest

from gatekeeper.errors import Denied
from gatekeeper.vetting.compose_files import check_referenced_files, referenced_files

ROOT = "/root-dir"


def host_path(value: str, what: str) -> str:
    import posixpath

    resolved = posixpath.normpath(value)
    if not resolved.startswith(ROOT + "/"):
        raise Denied(f"{what}: {resolved} outside", rule="host-path")
    return resolved


REFERENCES = [
    ("plain include", b"include:\n  - other.yaml\n", ["/root-dir/p/other.yaml"]),
    ("long include", b"include:\n  - path: [a.yaml, b.yaml]\n", ["/root-dir/p/a.yaml", "/root-dir/p/b.yaml"]),
    ("extends file", b"services:\n  a:\n    extends: {file: base.yaml, service: x}\n", ["/root-dir/p/base.yaml"]),
    ("extends same file", b"services:\n  a:\n    extends: b\n", []),
    ("no references", b"services:\n  a:\n    image: alpine\n", []),
    ("escaped key", b'services:\n  a:\n    "\\x65xtends": {file: base.yaml}\n', ["/root-dir/p/base.yaml"]),
    ("flow style", b'{"include": ["x.yaml"]}', ["/root-dir/p/x.yaml"]),
]


@pytest.mark.parametrize(("why", "data", "expected"), REFERENCES, ids=[r[0] for r in REFERENCES])
def test_references_found(why: str, data: bytes, expected: list[str]) -> None:
    assert sorted(referenced_files("/root-dir/p/compose.yaml", "/root-dir/p", data, host_path)) == expected


CHEATS = [
    ("absolute outside", b"include:\n  - /etc/compose.yaml\n"),
    ("dot-dot outside", b"include:\n  - ../../etc/x.yaml\n"),
    ("extends outside", b"services:\n  a:\n    extends: {file: /srv/other/compose.yaml, service: db}\n"),
    ("env_file of include", b"include:\n  - path: x.yaml\n    env_file: /etc/shadow\n"),
    ("project_directory", b"include:\n  - path: x.yaml\n    project_directory: /\n"),
    ("remote include", b"include:\n  - oci://registry/x\n"),
    ("git include", b"include:\n  - git@github.com:x/y.git\n"),
    ("interpolated", b"include:\n  - ${HOME}/x.yaml\n"),
    ("not a list", b"include: x.yaml\n"),
    ("unparseable", b"include: [\n"),
    ("not utf-8", b"include:\n  - \xff\n"),
]


@pytest.mark.parametrize(("why", "data"), CHEATS, ids=[c[0] for c in CHEATS])
def test_cheats_are_denied(why: str, data: bytes) -> None:
    with pytest.raises(Denied):
        referenced_files("/root-dir/p/compose.yaml", "/root-dir/p", data, host_path)


def test_references_are_followed_recursively() -> None:
    files = {
        "/root-dir/p/compose.yaml": b"include:\n  - a.yaml\n",
        "/root-dir/p/a.yaml": b"services:\n  x:\n    extends: {file: /etc/evil.yaml, service: y}\n",
    }
    with pytest.raises(Denied):
        check_referenced_files(["/root-dir/p/compose.yaml"], "/root-dir/p", files.__getitem__, host_path)


def test_reference_cycles_terminate() -> None:
    files = {"/root-dir/p/a.yaml": b"include: [b.yaml]\n", "/root-dir/p/b.yaml": b"include: [a.yaml]\n"}
    check_referenced_files(["/root-dir/p/a.yaml"], "/root-dir/p", files.__getitem__, host_path)


ENCODED = [
    ("utf-16 with BOM", "include:\n  - /etc/x.yaml\n".encode("utf-16")),
    ("binary key include", b"!!binary aW5jbHVkZQ==:\n  - /etc/x.yaml\n"),
    ("binary key extends", b"services:\n  a:\n    !!binary ZXh0ZW5kcw==: {file: /etc/x.yaml, service: b}\n"),
    ("explicit binary key", b"? !!binary aW5jbHVkZQ==\n: [/etc/x.yaml]\n"),
    ("NUL byte", b"services: {}\n\x00"),
]


@pytest.mark.parametrize(("why", "data"), ENCODED, ids=[e[0] for e in ENCODED])
def test_encodings_and_tags_that_hide_keys_are_denied(why: str, data: bytes) -> None:
    """go-yaml reads UTF-16 and !!binary keys: neither may hide an include from the screen."""
    with pytest.raises(Denied):
        referenced_files("/root-dir/p/compose.yaml", "/root-dir/p", data, host_path)


def test_exclamation_in_a_string_value_is_fine() -> None:
    data = b"services:\n  a:\n    image: alpine\n    command: ['echo', 'hi!']\n"
    assert referenced_files("/root-dir/p/compose.yaml", "/root-dir/p", data, host_path) == []
