"""The X-Dim-Auth header (form 2) for tests that sign requests themselves.

One copy of docs/protocol.md's rule, as libdim/net/auth.cc signs: an HMAC-
SHA256 over "dim-auth-2", the identity, method, target, time, a fresh
nonce, the addressed host:port and the body's SHA-256.
"""
import hashlib
import hmac
import os
import time


def node_key(secret: bytes, node: str) -> bytes:
    """A node's key at generation 0: HMAC(site secret, "node:" + NAME)."""
    return hmac.new(secret, b"node:" + node.encode(), hashlib.sha256).digest()


def header(ident: str, key: bytes, method: str, target: str, to: str, body_sha256: str) -> str:
    """The header value; `to` is the addressed server's host:port (lower case)."""
    now, nonce = str(int(time.time())), os.urandom(16).hex()
    msg = "\n".join(["dim-auth-2", ident, method, target, now, nonce, to.lower(), body_sha256])
    mac = hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()
    return " ".join([ident, now, nonce, to.lower(), body_sha256, mac])
