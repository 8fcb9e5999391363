"""Signing keys of published bundles: Ed25519 through ``cryptography``.

``facs publish --keygen FILE`` writes a private key (OpenSSH format, 0600) and
prints its public line (``ssh-ed25519 AAAA... facsimile-publish``), which is
what each host is given (``facs pull --key``). A manifest is signed over a
context string and its canonical JSON (``canonical``), so that the bytes a
host checks are exactly what it acts on, whatever the spacing of the file.
Keys are named by their OpenSSH fingerprint (``SHA256:...``), as
``ssh-keygen -l`` shows them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import SyncError

#: what a signature is made over, before the payload: a signature of something
#: else (another program's, another format's) never verifies as a manifest's
CONTEXT = b"facsimile-bundle-manifest-1\n"
ALG = "ed25519"
COMMENT = "facsimile-publish"


def canonical(payload: Any) -> bytes:
    """The one byte form of a JSON value that is signed: sorted keys, no spaces."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def fingerprint(key: Ed25519PublicKey) -> str:
    """``SHA256:...``: the OpenSSH fingerprint of a public key."""
    blob = base64.b64decode(public_line(key).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def public_line(key: Ed25519PublicKey, comment: str = "") -> str:
    """``ssh-ed25519 AAAA... [comment]``: the key as hosts are given it."""
    line = key.public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".strip()


def keygen(path: str | Path) -> str:
    """Write a new Ed25519 private key to ``path`` (0600, never over one) and its
    public line to ``path.pub``; returns the public line."""
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    data = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SyncError("a key is already there; it was not replaced", file=path) from None
    except OSError as exc:
        raise SyncError(f"cannot write the signing key: {exc.strerror}", file=path) from None
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(data)
    line = public_line(key.public_key(), COMMENT)
    Path(f"{path}.pub").write_text(line + "\n", encoding="ascii")
    return line


def load_private(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 private key of a PEM (PKCS#8) or OpenSSH file (unencrypted), or
    that key's text itself (``FACSIMILE_SIGNING_KEY`` holding a CI secret)."""
    if str(path).lstrip().startswith("-----BEGIN"):
        data, path = str(path).strip().encode() + b"\n", "FACSIMILE_SIGNING_KEY"
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise SyncError(f"cannot read the signing key: {exc.strerror}",
                            file=path) from None
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key: Any = ser.load_ssh_private_key(data, None)
        else:
            key = ser.load_pem_private_key(data, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SyncError("not an unencrypted Ed25519 private key (PEM or OpenSSH); make one "
                        "with facs publish --keygen FILE", file=path) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SyncError(f"a {type(key).__name__} is not an Ed25519 key; make one with "
                        "facs publish --keygen FILE", file=path)
    return key


def load_public(text: str) -> Ed25519PublicKey:
    """A public key from ``text``: a file holding one, an ``ssh-ed25519 AAAA...``
    line, a PEM public key, or the raw key in base64 (32 bytes)."""
    shown = text if len(text) < 60 else text[:40] + "…"
    data = text.strip()
    # a path, not a key in base64 (32 bytes in base64 end with "=")
    path = "/" in data and not data.endswith("=")
    if not data.startswith(("ssh-", "-----")) and (path or os.path.exists(data)):
        try:
            data = Path(data).read_text(encoding="ascii").strip()
        except OSError as exc:
            raise SyncError(f"cannot read the public key: {exc.strerror}", file=text) from None
        except UnicodeDecodeError:
            raise SyncError("not a public key file (not text)", file=text) from None
        shown = text
    try:
        if data.startswith("ssh-"):
            key: Any = ser.load_ssh_public_key(" ".join(data.split()[:2]).encode())
        elif data.startswith("-----"):
            key = ser.load_pem_public_key(data.encode())
        else:
            raw = base64.b64decode(data, validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm, binascii.Error):
        raise SyncError(f"--key {shown!r} is not an Ed25519 public key (a .pub file, an "
                        "ssh-ed25519 line, PEM, or 32 bytes in base64)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SyncError(f"--key {shown!r} is a {type(key).__name__}, not an Ed25519 key")
    return key


def envelope(payload: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The manifest file: the payload and its signature, one JSON document."""
    sig = key.sign(CONTEXT + canonical(payload))
    doc = {"format": 1, "payload": payload,
           "signature": {"alg": ALG, "key": fingerprint(key.public_key()),
                         "value": base64.b64encode(sig).decode()}}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def opened(data: bytes, keys: Sequence[Ed25519PublicKey], where: str) -> dict[str, Any]:
    """The payload of the manifest ``data`` once its signature is checked against
    ``keys``; a one-line refusal when it is unsigned, damaged or signed by another."""
    try:
        doc = json.loads(data)
        payload, sig = doc["payload"], doc.get("signature")
        assert isinstance(payload, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise SyncError(f"{where} is not a facsimile manifest (damaged or truncated): "
                        "nothing was changed") from None
    if not isinstance(sig, dict) or not sig.get("value"):
        raise SyncError(f"{where} is not signed: refused, nothing was changed")
    try:
        raw = base64.b64decode(str(sig["value"]), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    message = CONTEXT + canonical(payload)
    for key in keys:
        try:
            key.verify(raw, message)
            return payload
        except InvalidSignature:
            continue
    known = ", ".join(fingerprint(k) for k in keys)
    raise SyncError(f"{where}: the signature does not verify with {known} (signed by "
                    f"{sig.get('key', 'an unknown key')}, or tampered with): refused, "
                    "nothing was changed")


def fingerprints(keys: Iterable[Ed25519PublicKey]) -> list[str]:
    """The fingerprints of ``keys``, for messages."""
    return [fingerprint(k) for k in keys]
