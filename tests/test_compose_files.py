# One case per line keeps each YAML beside its expectation; such lines run long.
# ruff: noqa: E501

"""include/extends references are found however the YAML spells them, with compose's
bases (an include's relative to the project's working directory, an extends file's to the
file naming it), and files that cannot reference anything are not parsed at all."""

from __future__ import annotations

import pytest

from gatekeeper.errors import Denied
from gatekeeper.vetting.compose_files import referenced_files as references_of
from gatekeeper.vetting.compose_files import render_files

ROOT = "/root-dir"


def host_path(value: str, what: str) -> str:
    import posixpath

    resolved = posixpath.normpath(value)
    if not resolved.startswith(ROOT + "/"):
        raise Denied(f"{what}: {resolved} outside", rule="host-path")
    return resolved


def referenced_files(path: str, workdir: str, data: bytes, host_path: object = None) -> list[str]:
    """The files compose would open, checked against the path rule as render_files does."""
    return [host_path(ref[1], ref[0]) for ref in references_of(path, workdir, data) if ref[3] != "directory"]


def walk(files: dict[str, bytes], start: str = "/root-dir/p/compose.yaml", workdir: str = "/root-dir/p") -> dict[str, bytes]:
    return render_files([start], workdir, files.get, host_path)


REFERENCES = [
    ("plain include", b"include:\n  - other.yaml\n", ["/root-dir/p/.env", "/root-dir/p/other.yaml"]),
    ("long include", b"include:\n  - path: [a.yaml, b.yaml]\n", ["/root-dir/p/.env", "/root-dir/p/a.yaml", "/root-dir/p/b.yaml"]),
    ("include in a directory reads its .env", b"include:\n  - sub/x.yaml\n", ["/root-dir/p/sub/.env", "/root-dir/p/sub/x.yaml"]),
    ("include env_file instead of .env", b"include:\n  - path: sub/x.yaml\n    env_file: vars.env\n", ["/root-dir/p/sub/x.yaml", "/root-dir/p/vars.env"]),
    ("include project_directory", b"include:\n  - path: sub/x.yaml\n    project_directory: other\n", ["/root-dir/p/other/.env", "/root-dir/p/sub/x.yaml"]),
    ("extends file", b"services:\n  a:\n    extends: {file: base.yaml, service: x}\n", ["/root-dir/p/base.yaml"]),
    ("extends same file", b"services:\n  a:\n    extends: b\n", []),
    ("no references", b"services:\n  a:\n    image: alpine\n", []),
    ("escaped key", b'services:\n  a:\n    "\\x65xtends": {file: base.yaml}\n', ["/root-dir/p/base.yaml"]),
    ("flow style", b'{"include": ["x.yaml"]}', ["/root-dir/p/.env", "/root-dir/p/x.yaml"]),
]


@pytest.mark.parametrize(("why", "data", "expected"), REFERENCES, ids=[r[0] for r in REFERENCES])
def test_references_found(why: str, data: bytes, expected: list[str]) -> None:
    assert sorted(referenced_files("/root-dir/p/compose.yaml", "/root-dir/p", data, host_path)) == expected


def test_bases_are_composes() -> None:
    """An include is relative to the project's working directory (here not the file's own),
    an extends file to the file naming it; an included project works in its own directory."""
    files = {
        "/root-dir/app/compose.yaml": b"include: [inc/sub.yaml]\nservices:\n  a:\n    extends: {file: ../lib/base.yaml, service: b}\n",
        "/root-dir/pd/inc/sub.yaml": b"include: [deeper.yaml]\n",
        "/root-dir/pd/inc/deeper.yaml": b"services: {}\n",
        "/root-dir/lib/base.yaml": b"services:\n  b:\n    extends: {file: more/base2.yaml, service: c}\n",
        "/root-dir/lib/more/base2.yaml": b"services: {}\n",
    }
    staged = render_files(["/root-dir/app/compose.yaml"], "/root-dir/pd", files.get, host_path)
    directories = ["/root-dir/pd/", "/root-dir/pd/inc/"]  # the project's and the included project's
    assert sorted(staged) == sorted([*files, *directories])  # the .env files do not exist: left out


CHEATS = [
    ("absolute outside", b"include:\n  - /etc/compose.yaml\n", "host-path"),
    ("absolute inside", b"include:\n  - /root-dir/p/x.yaml\n", "compose-render-file"),
    ("dot-dot outside", b"include:\n  - ../../etc/x.yaml\n", "host-path"),
    ("climbs above /", b"include:\n  - ../../../../../../root-dir/p/x.yaml\n", "compose-file"),
    ("extends outside", b"services:\n  a:\n    extends: {file: /srv/other/compose.yaml, service: db}\n", "host-path"),
    ("extends absolute inside", b"services:\n  a:\n    extends: {file: /root-dir/p/b.yaml, service: db}\n", "compose-render-file"),
    ("env_file of include", b"include:\n  - path: x.yaml\n    env_file: /etc/shadow\n", "host-path"),
    ("project_directory", b"include:\n  - path: x.yaml\n    project_directory: /\n", "host-path"),
    ("remote include", b"include:\n  - oci://registry/x\n", "compose-file"),
    ("git include", b"include:\n  - git@github.com:x/y.git\n", "compose-file"),
    ("interpolated", b"include:\n  - ${HOME}/x.yaml\n", "compose-file"),
    ("not a list", b"include: x.yaml\n", "compose-file"),
    ("unparseable", b"include: [\n", "compose-file"),
    ("not utf-8", b"include:\n  - \xff\n", "compose-file"),
]


@pytest.mark.parametrize(("why", "data", "rule"), CHEATS, ids=[c[0] for c in CHEATS])
def test_cheats_are_denied(why: str, data: bytes, rule: str) -> None:
    with pytest.raises(Denied) as denied:
        walk({"/root-dir/p/compose.yaml": data})
    assert denied.value.rule == rule, denied.value.message


def test_references_are_followed_recursively() -> None:
    files = {
        "/root-dir/p/compose.yaml": b"include:\n  - a.yaml\n",
        "/root-dir/p/a.yaml": b"services:\n  x:\n    extends: {file: /etc/evil.yaml, service: y}\n",
    }
    with pytest.raises(Denied):
        walk(files)


def test_reference_cycles_terminate() -> None:
    files = {"/root-dir/p/a.yaml": b"include: [b.yaml]\n", "/root-dir/p/b.yaml": b"include: [a.yaml]\n"}
    assert sorted(walk(files, "/root-dir/p/a.yaml")) == sorted([*files, "/root-dir/p/"])


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
