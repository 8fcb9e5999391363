"""State encrypted to age recipients and laid out for git: this module owns that format.

A sealed family file keeps names, kinds, a lineage and a revision per entry in clear,
and gives each entry its own ASCII-armored age ciphertext of a JSON object: where the
entry is (``"at": "/modules/app"``) and every field but ``kind`` and ``rev`` (the
value, the values it replaced). An unchanged entry keeps its ciphertext, so rotating a
value changes only its entry's lines and two clones rotating different entries merge
cleanly. The serial is not stored (it would conflict on every write): it is the sum of
the revs. Identities are X25519 files (as ``age-keygen`` writes them) or unencrypted
OpenSSH keys; all cryptography is pyrage's, the bindings of the Rust age implementation.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyrage
from pyrage import ssh, x25519

from ..errors import StateError

FORMAT = 2
PLAIN_FORMAT = 1
SECTIONS = ("modules", "generate", "daemons")
CLEAR = ("kind", "rev")  # the fields of an entry kept in clear; the others are sealed
NO_MATCH = "No matching keys found"  # how age's DecryptError::NoMatchingKeys reads

Recipient = x25519.Recipient | ssh.Recipient
Identity = x25519.Identity | ssh.Identity


def parse_recipients(strings: Sequence[str], *, file: str | Path | None = None) -> list[Recipient]:
    """Age X25519 (``age1...``) and ssh (``ssh-ed25519``, ``ssh-rsa``) public keys."""
    out: list[Recipient] = []
    for i, text in enumerate(strings):
        text = " ".join(str(text).split())
        module = x25519 if text.startswith("age1") else ssh if text.startswith("ssh-") else None
        reason = "not an age (age1...) or ssh (ssh-ed25519, ssh-rsa) public key"
        try:
            if module is not None:
                out.append(module.Recipient.from_str(text))
                continue
        except pyrage.RecipientError as exc:
            reason = f"not a valid public key ({exc})"
        if text.upper().startswith("AGE-SECRET-KEY"):
            reason, text = "a SECRET key, not a public one: remove it and make a new one", ""
        raise StateError(f"recipient {short(text)!r} is {reason}", file=file,
                         pointer=f"/recipients/{i}")
    if not out:
        raise StateError("there are no recipients to encrypt to", file=file)
    return out


def short(recipient: str) -> str:
    """A recipient as errors name it: ``age1qy4f…x9zq``, ``ssh-ed25519 …Xk3p alice@host``."""
    parts = recipient.split()
    if len(recipient) <= 24:
        return recipient
    if parts[0].startswith("ssh-") and len(parts) > 1:
        return " ".join([parts[0], "…" + parts[1][-8:], *parts[2:]])
    if parts[0].startswith("age1"):
        return parts[0][:10] + "…" + parts[0][-4:]
    return recipient[:16] + "…"


def _key_set(recipients: Sequence[str]) -> frozenset[str]:
    """What a recipient list encrypts to: order, spacing and ssh comments aside."""
    return frozenset(" ".join(str(r).split()[:2]) for r in recipients)


def identity_path(env: Mapping[str, str] = os.environ) -> Path:
    """``$FACSIMILE_IDENTITY``, else ``$XDG_CONFIG_HOME/facsimile/identity.txt``."""
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    if given := env.get("FACSIMILE_IDENTITY"):
        return home / given[2:] if given.startswith("~/") else Path(given)
    config = env.get("XDG_CONFIG_HOME", "")
    base = Path(config) if os.path.isabs(config) else home / ".config"  # XDG: absolute only
    return base / "facsimile" / "identity.txt"


def load_identities(path: str | Path) -> list[Identity]:
    """The identities of an age identity file or of an unencrypted OpenSSH private key.

    A missing file is ``[]`` (the caller knows what to tell); an unreadable or garbled
    one is an error naming the path and line, never the line's text.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"cannot read identity: {exc.strerror}", file=path) from exc
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            return [ssh.Identity.from_buffer(data)]
        except pyrage.IdentityError as exc:
            raise StateError(f"not a usable ssh private key ({exc}); facsimile reads only "
                             "unencrypted ed25519 and rsa keys", file=path) from exc
    out: list[Identity] = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith("AGE-SECRET-KEY-1"):
                out.append(x25519.Identity.from_str(line))
                continue
        except pyrage.IdentityError:
            pass
        raise StateError("not an age secret key (AGE-SECRET-KEY-1...); plugin and "
                         "passphrase-protected identities are not read",
                         file=path, line=number) from None  # never chain the line's text
    if not out:
        raise StateError("identity file holds no AGE-SECRET-KEY-1 line", file=path)
    return out


def keygen(path: str | Path) -> str:
    """Write a new X25519 identity file as ``age-keygen -o`` does (0600, never over one)."""
    path = Path(path)
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    created = datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise StateError("an identity is already there; it was not replaced", file=path) from exc
    except OSError as exc:
        raise StateError(f"cannot write identity: {exc.strerror}", file=path) from exc
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        os.fchmod(fh.fileno(), 0o600)  # whatever the umask
        fh.write(f"# created: {created}\n# public key: {public}\n{identity}\n")
        fh.flush()
        os.fsync(fh.fileno())
    return public


def public_key(identity_file: str | Path) -> str:
    """The recipient of an identity file's first identity (an ssh key's is its ``.pub``)."""
    identities = load_identities(identity_file)
    if not identities:
        raise StateError("there is no identity here", file=identity_file)
    if isinstance(identities[0], x25519.Identity):
        return str(identities[0].to_public())
    pub = Path(f"{identity_file}.pub")  # pyrage cannot derive an ssh public key
    try:
        return " ".join(pub.read_text(encoding="utf-8").split())
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError("cannot read the public key of this ssh identity", file=pub) from exc


def seal_bytes(data: bytes, recipients: Sequence[Recipient]) -> str:
    """``data`` encrypted to ``recipients``, ASCII-armored as ``age -a`` writes it."""
    try:
        return pyrage.encrypt(bytes(data), list(recipients), armored=True).decode("ascii")
    except pyrage.EncryptError as exc:
        raise StateError(f"cannot encrypt: {exc}") from exc


def open_bytes(text: str, identities: Sequence[Identity], shown: str, *,
               recipients: Sequence[str] = (), pointer: str | None = None) -> bytes:
    """Decrypt armored (or binary) age data; ``shown``, ``recipients`` name it in errors."""
    if not identities:
        raise StateError("there is no identity to decrypt it with", file=shown, pointer=pointer)
    try:
        return pyrage.decrypt(text.encode("utf-8"), list(identities))
    except pyrage.DecryptError as exc:
        if str(exc) != NO_MATCH:
            raise StateError(f"the ciphertext is damaged ({exc})", file=shown,
                             pointer=pointer) from exc
        to = f"; it is encrypted to {', '.join(map(short, recipients))}" if recipients else ""
        raise StateError("none of your identities can decrypt it" + to, file=shown,
                         pointer=pointer) from exc


def encrypt_value(plaintext: str, recipients: Sequence[Recipient]) -> str:
    """A string encrypted to ``recipients``, ASCII-armored."""
    return seal_bytes(plaintext.encode("utf-8"), recipients)


def decrypt_value(armored: str, identities: Sequence[Identity], *, shown: str,
                  recipients: Sequence[str] = (), pointer: str | None = None) -> str:
    """The string ``armored`` holds; an error naming ``shown`` if no identity opens it."""
    data = open_bytes(armored, identities, shown, recipients=recipients, pointer=pointer)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateError("decrypted value is not UTF-8 text", file=shown,
                         pointer=pointer) from exc


def seal(plain: Mapping[str, Any], recipients: Sequence[str], *,
         previous: Mapping[str, Any] | None = None,
         previous_plain: Mapping[str, Any] | None = None,
         lineage: str | None = None) -> dict[str, Any]:
    """The sealed document of ``plain`` (today's shape; an entry's ``rev`` is optional).

    ``previous`` is the sealed document being replaced and ``previous_plain`` what it
    opened to: an entry whose kind and sealed fields are unchanged keeps its ciphertext
    and rev (byte-identical lines) unless the recipients changed (then it is encrypted
    anew, rev kept); a changed entry gets a fresh ciphertext and the rev ``plain``
    gives it (the plain document is the one source of revs), else the old rev + 1. The lineage
    is ``lineage``, else the previous one, else a new one.
    """
    if (previous is None) != (previous_plain is None):
        raise TypeError("seal: give both previous and previous_plain, or neither")
    keys = parse_recipients(recipients)
    old, old_plain = previous or {}, previous_plain or {}
    rekey = _key_set(old.get("recipients", [])) != _key_set(recipients)
    doc: dict[str, Any] = {"format": FORMAT, "next_id": plain.get("next_id", 1),
                           "lineage": lineage or _lineage(old) or uuid.uuid4().hex,
                           "recipients": [" ".join(r.split()) for r in recipients]}
    for section in SECTIONS:
        entries = plain.get(section)
        if entries is None:
            continue
        if not isinstance(entries, Mapping):
            raise StateError("state has an unexpected shape", pointer=f"/{section}")
        doc[section] = {
            name: _seal_entry(entry, old.get(section, {}).get(name),
                              old_plain.get(section, {}).get(name), keys, rekey=rekey,
                              at=f"/{section}/{_esc(name)}")
            for name, entry in entries.items()}
    return doc


def _seal_entry(entry: Any, was: Any, was_plain: Any, keys: Sequence[Recipient], *,
                rekey: bool, at: str) -> dict[str, Any]:
    """One sealed entry: the old one kept if nothing changed, else encrypted anew."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("kind"), str):
        raise StateError("state entry has no kind", pointer=at)
    kind, text = entry["kind"], _sealed_text(entry, at)
    if not isinstance(was, Mapping):
        rev = _rev(entry)  # new here
    elif (isinstance(was_plain, Mapping) and was.get("kind") == was_plain.get("kind") == kind
          and _sealed_text(was_plain, at) == text):
        if not rekey and isinstance(was.get("age"), str):
            return {"age": was["age"], "kind": kind, "rev": _rev(was)}
        rev = _rev(was)  # same value, other recipients
    else:  # changed: the plain document's rev when it says one (state.fill sets it)
        rev = _rev(entry, 0) if _rev(entry, 0) > _rev(was) else _rev(was) + 1
    return {"age": encrypt_value(text, keys), "kind": kind, "rev": rev}


def _sealed_text(entry: Mapping[str, Any], at: str) -> str:
    fields = {k: v for k, v in entry.items() if k not in CLEAR}
    return json.dumps({**fields, "at": at}, sort_keys=True)


def _rev(entry: Any, default: int = 1) -> int:
    rev = entry.get("rev", default) if isinstance(entry, Mapping) else default
    return rev if isinstance(rev, int) and not isinstance(rev, bool) and rev > 0 else default


def open_sealed(doc: Mapping[str, Any], identities: Sequence[Identity], *,
                shown: str) -> dict[str, Any]:
    """The plain document (today's shape, values decrypted, each entry's ``rev`` kept)."""
    _check_sealed(doc, shown)
    plain: dict[str, Any] = {"format": PLAIN_FORMAT, "next_id": doc.get("next_id", 1),
                             "modules": {}, "generate": {}}
    for section in SECTIONS:
        for name, entry in doc.get(section, {}).items():
            at = f"/{section}/{_esc(name)}"
            text = decrypt_value(entry["age"], identities, shown=shown, pointer=f"{at}/age",
                                 recipients=doc["recipients"])
            try:
                fields = json.loads(text)
            except json.JSONDecodeError:
                fields = None
            if not isinstance(fields, dict) or "value" not in fields:
                raise StateError("decrypted entry is not a JSON object with a value",
                                 file=shown, pointer=at)
            if fields.pop("at", at) != at:  # a hand merge or edit moved a ciphertext
                raise StateError("this ciphertext belongs to another entry; restore the file "
                                 "from git", file=shown, pointer=at)
            plain.setdefault(section, {})[name] = {**fields, "kind": entry["kind"],
                                                   "rev": _rev(entry)}
    return plain


def _check_sealed(doc: Any, shown: str) -> None:
    """A sealed document's clear shape; a damaged one is an error, never replaced."""
    if not is_sealed(doc):
        raise StateError(f"not a sealed state file (format {FORMAT})", file=shown)
    recipients = doc.get("recipients")
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise StateError("recipients must be a list of strings", file=shown,
                         pointer="/recipients")
    for section in SECTIONS:
        entries = doc.get(section, {})
        if not isinstance(entries, dict):
            raise StateError("state has an unexpected shape", file=shown, pointer=f"/{section}")
        for name, entry in entries.items():
            if (not isinstance(entry, dict) or not isinstance(entry.get("kind"), str)
                    or not isinstance(entry.get("age"), str)
                    or ("rev" in entry and _rev(entry, 0) == 0)):
                raise StateError("sealed entry needs a kind, an age ciphertext and a whole "
                                 "rev above 0", file=shown, pointer=f"/{section}/{_esc(name)}")


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def is_sealed(doc: Any) -> bool:
    """Whether ``doc`` is a sealed (format 2) document."""
    return isinstance(doc, Mapping) and doc.get("format") == FORMAT


def _lineage(doc: Mapping[str, Any]) -> str | None:
    value = doc.get("lineage")
    return value if isinstance(value, str) and value else None


def lineage(doc: Mapping[str, Any]) -> str | None:
    """The document's lineage (a uuid4 hex made once, not secret), if it has one."""
    return _lineage(doc)


def serial(doc: Mapping[str, Any]) -> int:
    """The sum of the entries' revs (a missing rev counts 1): it grows with every change
    (state never drops an entry) and a merge of two clones' rotations is above both."""
    return sum(_rev(entry) for section in SECTIONS
               if isinstance(doc.get(section), Mapping) for entry in doc[section].values())


def dumps(doc: Mapping[str, Any]) -> str:
    """The document as it is written: ``indent=2``, sorted keys, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
