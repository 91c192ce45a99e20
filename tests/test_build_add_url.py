"""Dockerfile `ADD <url>` / `ADD <git repository>` (rule build-add-url): the engine fetches
those sources itself, on the host's network, so a build could read services only the host's
loopback reaches into the agent's image. Refused at the CLI layer (the Dockerfile of a build
or a compose build, with or without [images] allowed) and at the API layer (the Dockerfile in
the build context tar the proxy spooled); both use gatekeeper.vetting.images.check_add_sources."""

from __future__ import annotations

import io
import tarfile

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.policy import load_policy
from gatekeeper.proxy.vet import vet_api_request
from gatekeeper.vetting.images import check_add_sources
from tests.api_engine import FakeEngine
from tests.fakes import StaticWorld
from tests.test_proxy_vet import POLICY, request

APP = "/home/ai-worker/app"

ALLOWED = [
    "FROM alpine\nCOPY app /app\n",
    "FROM alpine\nADD app.py /app/\n",
    "FROM alpine\nADD rootfs.tar.gz /\n",
    "FROM alpine\nADD --chown=1000:1000 --link a b /dst/\n",
    "FROM alpine\nADD [\"a b\", \"/dst/\"]\n",
    "FROM alpine\nADD conf $HOME/\n",  # a variable in the destination only
    "FROM alpine\nRUN wget -O /x https://example.com/x\n",  # RUN: the build container's network
    "FROM alpine\n# ADD https://example.com/x /x\nCOPY a /a\n",  # a comment
    "FROM alpine\nCOPY --from=alpine /etc/hostname /h\n",
]

REFUSED = [
    "FROM alpine\nADD http://127.0.0.1:8080/secret /secret\n",
    "FROM alpine\nADD HTTPS://example.com/x /x\n",
    "FROM alpine\nadd https://example.com/x /x\n",
    "FROM alpine\nADD --checksum=sha256:0123 https://example.com/x /x\n",
    "FROM alpine\nADD a https://example.com/x /dst/\n",  # the URL as a second source
    "FROM alpine\nADD [\"http://169.254.169.254/latest/meta-data/\", \"/m\"]\n",
    "FROM alpine\nADD git@github.com:acme/app.git /src\n",
    "FROM alpine\nADD https://github.com/acme/app.git#main /src\n",
    "FROM alpine\nADD --keep-git-dir=true git://example.com/app /src\n",
    "FROM alpine\nADD github.com/acme/app /src\n",
    "FROM alpine\nADD \\\n  http://127.0.0.1/x \\\n  /x\n",  # continuation lines
    "FROM alpine\nADD \\\n# a comment inside the continuation\n\n  http://127.0.0.1/x /x\n",
    "# escape=`\nFROM alpine\nADD `\n  http://127.0.0.1/x /x\n",  # the escape directive
    "FROM alpine\nADD http`://127.0.0.1/x /x\n".replace("`", "\\"),  # an escaped character
    "FROM alpine\nADD \"http:\"//127.0.0.1/x /x\n",  # quotes split the scheme
    "FROM alpine\nARG SRC=http://127.0.0.1/x\nADD $SRC /x\n",  # a build argument
    "FROM alpine\nADD ${SRC:-http://127.0.0.1/x} /x\n",
    "FROM alpine\nONBUILD ADD http://127.0.0.1/x /x\n",
]


@pytest.mark.parametrize("text", ALLOWED)
def test_parser_allows(text: str) -> None:
    check_add_sources(text, "Dockerfile")


@pytest.mark.parametrize("text", REFUSED)
def test_parser_refuses(text: str) -> None:
    with pytest.raises(Denied) as denied:
        check_add_sources(text, "Dockerfile")
    assert denied.value.rule == "build-add-url"
    assert "RUN step" in str(denied.value)  # says what to do instead


# ------------------------------------------------------------------ CLI layer


def cli(command: str, text: str, name: str = "Dockerfile") -> tuple[bool, str]:
    decision = decide(command, load_policy(None), StaticWorld(files={f"{APP}/{name}": text.encode()}))
    return decision.allowed, decision.rule


@pytest.mark.parametrize("text", ALLOWED[:3])
def test_cli_build_allows(text: str) -> None:
    assert cli(f"docker build -t app {APP}", text) == (True, "allowed")
    assert cli(f"docker build -f {APP}/other.Dockerfile {APP}", text, "other.Dockerfile") == (True, "allowed")


@pytest.mark.parametrize("text", REFUSED)
def test_cli_build_refuses_without_an_image_allowlist(text: str) -> None:
    assert cli(f"docker build -t app {APP}", text) == (False, "build-add-url")
    named = cli(f"docker build -f {APP}/other.Dockerfile {APP}", text, "other.Dockerfile")
    assert named == (False, "build-add-url")


# ------------------------------------------------------------------ API layer


def context_tar(files: dict[str, str], links: dict[str, str] | None = None, compression: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:" + compression) as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return out.getvalue()


def api(body: bytes, query: str = "", spooled: bool = False) -> tuple[bool, str]:
    req = request("POST", "/v1.47/build?t=newthing%3A1" + query)
    if spooled:  # as the transport hands it over: the body in a file
        spool = io.BytesIO(body)
        spool.seek(len(body))
        req.context = spool
    else:
        req.body = body
    verdict = vet_api_request(req, POLICY, FakeEngine())
    return verdict.allowed, verdict.rule


@pytest.mark.parametrize("text", ALLOWED)
def test_api_build_allows(text: str) -> None:
    assert api(context_tar({"Dockerfile": text, "app": "x"})) == (True, "allowed")
    assert api(context_tar({"./Dockerfile": text}, compression="gz"), spooled=True) == (True, "allowed")
    named = api(context_tar({"sub/my.Dockerfile": text}), "&dockerfile=sub%2Fmy.Dockerfile")
    assert named == (True, "allowed")
    assert api(context_tar({"dockerfile": text})) == (True, "allowed")  # the engine's lower-case fallback


@pytest.mark.parametrize("text", REFUSED)
def test_api_build_refuses(text: str) -> None:
    assert api(context_tar({"Dockerfile": text})) == (False, "build-add-url")
    assert api(context_tar({"Dockerfile": text}, compression="gz"), spooled=True) == (False, "build-add-url")
    assert api(context_tar({"Dockerfile": text}, compression="xz"), spooled=True) == (False, "build-add-url")
    assert api(context_tar({"./sub/../my.Dockerfile": text}),
               "&dockerfile=..%2F..%2Fmy.Dockerfile") == (False, "build-add-url")  # names cleaned
    assert api(context_tar({"dockerfile": text})) == (False, "build-add-url")
    good = "FROM alpine\nCOPY a /a\n"
    assert api(context_tar({"Dockerfile": good, "Dockerfile ": text})) == (True, "allowed")  # control


def test_api_build_refuses_what_it_cannot_read() -> None:
    good = "FROM alpine\nCOPY a /a\n"
    assert api(context_tar({"real": good}, {"Dockerfile": "real"})) == (False, "build-add-url")  # a symlink
    assert api(context_tar({"d/Dockerfile": good}, {"sub": "d"}),
               "&dockerfile=sub%2FDockerfile") == (False, "build-add-url")  # a symlinked directory
    assert api(context_tar({"other": good})) == (False, "build-add-url")  # no Dockerfile to check
    assert api(b"FROM alpine\nADD http://127.0.0.1/x /x\n") == (False, "build-add-url")  # not a tar
    assert api(context_tar({"Dockerfile": "#" * (1 << 20) + "\n"})) == (False, "build-add-url")  # too large
    assert api(b"") == (True, "allowed")  # control: no context, nothing to build
    assert api(context_tar({"Dockerfile": good})) == (True, "allowed")  # control
    assert api(b"", "&version=2") == (False, "build-add-url")  # BuildKit: the Dockerfile is not in the body


def unterminated(files: dict[str, str], cut: int = 0) -> bytes:
    """A tar as the docker CLI sends `build -f - DIR`'s context: no end-of-archive blocks, the
    last member's data not padded (`cut` bytes fewer still: a stream cut short)."""
    out = b""
    for name, text in files.items():
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        out += info.tobuf(format=tarfile.PAX_FORMAT) + data + b"\0" * (-len(data) % 512)
    return out[: len(out) - (-len(data) % 512) - cut]


def test_api_build_reads_the_cli_stdin_dockerfile_context() -> None:
    """`docker build -f - DIR` (classic builder): the CLI adds the Dockerfile as .dockerfile.<id>
    and a .dockerignore last, without end-of-archive blocks; the engine takes it, so does the proxy."""
    good, bad = "FROM alpine\nCOPY a /a\n", "FROM alpine\nADD http://127.0.0.1/x /x\n"
    query = "&dockerfile=.dockerfile.52c49d56"
    ignore = ".dockerfile.52c49d56\n.dockerignore\n"
    assert api(unterminated({"a": "x", ".dockerfile.52c49d56": good, ".dockerignore": ignore}), query) == (
        True, "allowed")
    assert api(unterminated({"a": "x", ".dockerfile.52c49d56": bad, ".dockerignore": ignore}), query) == (
        False, "build-add-url")
    # the Dockerfile itself cut short, or a later copy of it cut short: refused, never half read
    cut_short = unterminated({"a": "x", ".dockerfile.52c49d56": good}, cut=3)
    assert api(cut_short, query) == (False, "build-add-url")
    later = unterminated({".dockerfile.52c49d56": good, "./.dockerfile.52c49d56": good + "RUN x\n"}, cut=3)
    assert api(later, query) == (False, "build-add-url")
    assert api(unterminated({"a": "x", ".dockerfile.52c49d56": good}), query) == (True, "allowed")  # control
