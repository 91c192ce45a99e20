"""The Dockerfile both layers check in a build context archive is the one the engine builds
(gatekeeper.build_context): the proxy reads it in what `docker build` sends, the CLI layer in
`docker build - < ctx.tar`. Trying to cheat: each shape of tests/context_archives.py hides an
evil Dockerfile (ADD of a loopback URL) behind a harmless one a plain reader finds (the
control), and is refused or read as the engine reads it. tests/e2e/test_context_archives.py
builds every shape on the real engine."""

from __future__ import annotations

import io
import tarfile

import pytest

from gatekeeper.build_context import dockerfile_text
from gatekeeper.errors import Denied
from gatekeeper.vetting.images import dockerfile_in_archive
from tests.context_archives import SHAPES, end, extended, link, naive_dockerfile, pax_record, plain

HARMLESS = b"FROM scratch\nCOPY app /app\n"
EVIL = b"FROM scratch\nADD http://127.0.0.1:8080/secret /secret\n"


def read(archive: bytes, name: str = "Dockerfile") -> str | None:
    """The Dockerfile text gatekeeper checks, or None when it refuses the archive."""
    try:
        return dockerfile_text(io.BytesIO(archive), name)
    except Denied as error:
        assert error.rule == "build-add-url"
        return None


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_the_dockerfile_checked_is_the_one_built(shape: str) -> None:
    archive = SHAPES[shape](HARMLESS, EVIL)
    assert naive_dockerfile(archive) == HARMLESS  # control: a plain reading sees the harmless one
    assert read(archive) in (None, EVIL.decode())


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_the_cli_layer_reads_stdin_contexts_alike(shape: str) -> None:
    try:
        text = dockerfile_in_archive(SHAPES[shape](HARMLESS, EVIL), "Dockerfile")
    except Denied:
        return
    assert text == EVIL.decode()


def written(files: dict[str, bytes], links: dict[str, str], fmt: int, compression: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:" + compression, format=fmt) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return out.getvalue()


LONG = "deep/" * 30 + "file.txt"


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_ordinary_contexts_are_read(fmt: int, compression: str) -> None:
    files = {"Dockerfile": HARMLESS, "app/main.py": b"print(1)\n", "node_modules/x/bin.js": b""}
    if fmt != tarfile.USTAR_FORMAT:
        files[LONG] = b"long"  # a pax or GNU long name: one extended header
    links = {"node_modules/.bin/x": "../x/bin.js", "current": "app", "abs": "/app/main.py"}
    assert read(written(files, links, fmt, compression)) == HARMLESS.decode()


def test_a_dockerfile_elsewhere_and_the_lowercase_fallback() -> None:
    archive = plain("sub/Dockerfile.dev", EVIL) + plain("dockerfile", HARMLESS) + end()
    assert read(archive, "sub/Dockerfile.dev") == EVIL.decode()
    assert read(archive) == HARMLESS.decode()  # no Dockerfile: the engine's fallback
    both = plain("Dockerfile", EVIL) + plain("dockerfile", HARMLESS) + end()
    assert read(both) == EVIL.decode()  # Dockerfile first, as the engine opens it


def test_links_on_the_dockerfiles_path_are_refused() -> None:
    assert read(plain("evil", EVIL) + link("Dockerfile", "evil") + end()) is None
    assert read(plain("x/Dockerfile", EVIL) + link("sub", "x") + end(), "sub/Dockerfile") is None
    # a symlink elsewhere that a member is written through, away from the Dockerfile, is fine
    away = plain("Dockerfile", HARMLESS) + link("a", "lib") + plain("a/Dockerfile", EVIL) + end()
    assert read(away) == HARMLESS.decode()


def test_a_long_name_and_a_long_link_together_are_read() -> None:
    """GNU tar writes L then K for a link whose name and target are both long: Python and Go
    agree on those (different fields)."""
    archive = (plain("Dockerfile", HARMLESS) + extended(b"L", LONG.encode() + b"\x00")
               + extended(b"K", LONG.encode() + b"\x00") + link("x", "y") + end())
    assert read(archive) == HARMLESS.decode()
    assert read(plain("Dockerfile", HARMLESS) + extended(b"x", pax_record("path", "p")) +
                plain("x", b"") + end()) == HARMLESS.decode()


def test_a_symlink_loop_is_refused() -> None:
    archive = link("a", "b") + link("b", "a") + plain("a/Dockerfile", EVIL) + end()
    assert read(archive) is None
