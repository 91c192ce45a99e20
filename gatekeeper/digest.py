"""SHA-256 without loading OpenSSL.

`hashlib` loads libcrypto through `_hashlib`, a few milliseconds that every
SSH command would pay for hashing a policy file or a public key of a few
hundred bytes. CPython also builds its own SHA-256 (`_sha2` from 3.12,
`_sha256` before), usually into the interpreter; it gives the same digests.
"""

from __future__ import annotations


def sha256_hex(data: bytes) -> str:
    return sha256_digest(data).hex()


def sha256_digest(data: bytes) -> bytes:
    import sys

    try:
        if sys.version_info >= (3, 12):
            from _sha2 import sha256  # type: ignore[import-not-found]  # CPython's C module, no stub
        else:
            from _sha256 import sha256  # type: ignore[import-not-found]  # CPython's C module, no stub
    except ImportError:  # an interpreter built without them
        from hashlib import sha256
    return sha256(data).digest()  # type: ignore[no-any-return]  # untyped without stubs, bytes at run time
