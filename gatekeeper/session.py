"""Who is asking: facts sshd gives the session, for the audit record only.

These never configure anything. SSH_CONNECTION and SSH_USER_AUTH are set by
sshd itself (our snippet accepts no client environment that could shadow them).
"""

from __future__ import annotations

import posix

from gatekeeper.environment import getenv


def session_facts() -> dict[str, object]:
    return {
        "session": posix.urandom(8).hex(),
        "user": user_name(),
        "client": getenv("SSH_CONNECTION"),
        "key": key_fingerprint(getenv("SSH_USER_AUTH")),
    }


def user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(posix.getuid()).pw_name
    except KeyError:
        return str(posix.getuid())


def key_fingerprint(auth_info_path: str | None) -> str | None:
    """SHA256 fingerprint of the public key sshd accepted (ExposeAuthInfo file)."""
    if not auth_info_path:
        return None
    try:
        with open(auth_info_path, "rb") as handle:  # bytes: a text file imports its codec (~0.15 ms)
            lines = handle.read(65536).decode("ascii").splitlines()
    except (OSError, ValueError):
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "publickey":
            return fingerprint_of_blob(fields[2])
    return None


def fingerprint_of_blob(blob_b64: str) -> str | None:
    """As ssh-keygen -l prints it. binascii and our digest, not base64 and hashlib:
    those import re and OpenSSL, milliseconds on every SSH command."""
    import binascii

    from gatekeeper.digest import sha256_digest

    try:
        blob = binascii.a2b_base64(blob_b64, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    digest = binascii.b2a_base64(sha256_digest(blob), newline=False).decode("ascii").rstrip("=")
    return "SHA256:" + digest
