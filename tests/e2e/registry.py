"""A read-only image registry on loopback, for pulls in the end-to-end suite (the machine has
no internet). It serves images made here, each one small layer (a text file) and a config
whose label tells them apart, by tag and by digest, over plain HTTP: dockerd pulls from
127.0.0.0/8 without TLS (loopback registries are insecure by default). What the agent pulls
is then a real pull through the engine's API (POST /images/create), the proxy's included.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import io
import json
import platform
import tarfile
import threading
from collections.abc import Iterator

from .stack import free_port

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_blobs(label: str) -> tuple[bytes, dict[str, bytes]]:
    """(manifest, blobs by digest) of an image whose one layer holds /gk-e2e-pulled.txt and
    whose config carries the label gk-e2e-pulled=`label` (so each label is its own image ID)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        content = f"{label}\n".encode()
        member = tarfile.TarInfo("gk-e2e-pulled.txt")
        member.size, member.mode = len(content), 0o644
        tar.addfile(member, io.BytesIO(content))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({
        "architecture": ARCHITECTURES.get(platform.machine(), platform.machine()), "os": "linux",
        "config": {"Labels": {"gk-e2e-pulled": label}, "Cmd": ["/gk-e2e-none"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(raw.getvalue())]},
        "history": [{"created_by": "tests/e2e/registry.py"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": digest(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                    "digest": digest(layer)}],
    }, sort_keys=True).encode()
    return manifest, {digest(config): config, digest(layer): layer}


class Registry:
    """The images served: `repository:tag` -> manifest; blobs by digest."""

    def __init__(self, images: dict[str, str]) -> None:
        self.host = ""  # 127.0.0.1:PORT once serving
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.blobs: dict[str, bytes] = {}
        for reference, label in images.items():
            repository, _, tag = reference.rpartition(":")
            manifest, blobs = image_blobs(label)
            self.manifests[(repository, tag)] = manifest
            self.manifests[(repository, digest(manifest))] = manifest
            self.blobs.update(blobs)

    def ref(self, reference: str) -> str:
        """`repository:tag` as the agent pulls it from here."""
        return f"{self.host}/{reference}"

    def digest_ref(self, reference: str) -> str:
        """`host/repository@sha256:...`: the same image by its manifest's digest."""
        repository, _, tag = reference.rpartition(":")
        return f"{self.host}/{repository}@{digest(self.manifests[(repository, tag)])}"

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path`."""
        if path in ("/v2", "/v2/"):
            return 200, "application/json", b"{}"
        if path.startswith("/v2/") and "/manifests/" in path:
            repository, _, reference = path[4:].partition("/manifests/")
            found = self.manifests.get((repository, reference))
            if found is not None:
                return 200, MANIFEST_TYPE, found
        if path.startswith("/v2/") and "/blobs/" in path:
            found = self.blobs.get(path.rpartition("/blobs/")[2])
            if found is not None:
                return 200, "application/octet-stream", found
        return 404, "application/json", b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}'


def handler_for(registry: Registry) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send(with_body=True)

        def do_HEAD(self) -> None:
            self.send(with_body=False)

        def send(self, *, with_body: bool) -> None:
            status, kind, body = registry.answer(self.path.partition("?")[0])
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            if status == 200 and "/manifests/" in self.path:
                self.send_header("Docker-Content-Digest", digest(body))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serving(images: dict[str, str]) -> Iterator[Registry]:
    """A registry serving `images` (`repository:tag` -> label) on 127.0.0.1 while the block runs."""
    registry = Registry(images)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler_for(registry))
    registry.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
