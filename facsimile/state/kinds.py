"""What the definitions ask to be generated, and how each kind is made.

A :class:`Want` is one value an instance family needs (a module's
password, a ``generate`` entry, a daemon's id) with its kind:
``password[:N]``, ``token[:N]``, ``uuid`` or ``id``. :data:`GENERATORS`
make the values of every kind but ``id``, which the store numbers.
"""

from __future__ import annotations

import re
import secrets
import string
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

PASSWORD_ALPHABET = string.ascii_letters + string.digits
DEFAULT_PASSWORD_LEN = 24
DEFAULT_TOKEN_BYTES = 32
#: kinds whose values are secrets (masked unless revealed)
SECRET_KINDS = ("password", "token")
#: a stored kind: ``password``, ``password:40``, ``token``, ``token:32``, ``uuid``, ``id``
KIND_RE = re.compile(r"^(?:(password|token)(?::[0-9]+)?|(uuid|id))$")

Generator = Callable[[int | None], Any]


def _password(length: int | None) -> str:
    """Letters and digits from the OS's random source, each equally likely: random
    bytes below the largest multiple of the alphabet's size are kept, the rest
    thrown away."""
    n = length or DEFAULT_PASSWORD_LEN
    size = len(PASSWORD_ALPHABET)
    limit = 256 - 256 % size
    chars: list[str] = []
    while len(chars) < n:
        chars += [PASSWORD_ALPHABET[b % size] for b in secrets.token_bytes(2 * n) if b < limit]
    return "".join(chars[:n])


def _token(nbytes: int | None) -> str:
    return secrets.token_hex(nbytes or DEFAULT_TOKEN_BYTES)


def _uuid(_: int | None) -> str:
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))


GENERATORS: dict[str, Generator] = {"password": _password, "token": _token, "uuid": _uuid}


@dataclass(frozen=True)
class Want:
    """One value the definitions ask for: ``section`` is ``modules``,
    ``generate`` or ``daemons``."""

    section: str
    name: str
    kind: str  # "password", "token:32", "uuid", "id"

    @property
    def base_kind(self) -> str:
        return self.kind.split(":", 1)[0]

    @property
    def arg(self) -> int | None:
        _, _, a = self.kind.partition(":")
        return int(a) if a else None

    @property
    def path(self) -> str:
        """The name templates see: ``module.app.password`` or ``state.secret_key``."""
        return f"module.{self.name}.password" if self.section == "modules" else f"state.{self.name}"


def wants_for(
    modules: Mapping[str, Mapping[str, Any]], generate: Mapping[str, str]
) -> list[Want]:
    """What an instance asks for: each module's password, each ``generate`` entry."""
    out = [Want("modules", m, "password") for m in sorted(modules)]
    out += [Want("generate", n, k) for n, k in sorted(generate.items())]
    return out
