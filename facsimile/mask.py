"""Masking: how a generated value is hidden in what facsimile prints.

:data:`MASK` stands in for every value shown masked; :func:`mask` puts it
in place of the values at given dotted paths of a document;
:func:`mask_credentials` hides the credentials a definition gives for a
destination or for remote state; :func:`state_values` and :func:`mask_text`
hide generated values in a text (a diff, an error): every family's current
values, and any value an entry has ever had, known by its keyed digest (the
state keeps those digests, never the values); :func:`scrub` does both for one
state.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import State

MASK = "********"
#: a value of fewer characters is masked only where it is a whole value
SHORT = 4
#: a word: a maximal run of the characters generated values are made of (letters
#: and digits), dashes inside it kept (a UUID); each dash-separated part is a word too
_WORD = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
#: a value: the right-hand side of ``key = value``, ``key: value``, ``"key": value,``
_VALUE = re.compile(r"""^(?P<lead>[^=:\n]*[=:][ \t]*)(?P<q>["']?)(?P<value>[^"'\s,;]+)"""
                    r"""(?P=q)(?P<tail>[ \t]*[,;]?[ \t]*)$""", re.M)


@dataclass(frozen=True)
class Secrets:
    """What a text is masked against: ``values`` wherever they are, and any word
    whose digest keyed with ``key`` (the root's local digest key) is one of
    ``digests``, or whose digest keyed with one of the ``keyed`` seen keys is one of
    the digests made with that key."""

    values: frozenset[str] = frozenset()
    digests: frozenset[str] = frozenset()
    key: bytes = b""
    keyed: tuple[tuple[bytes, frozenset[str]], ...] = ()

    @functools.cached_property
    def pattern(self) -> re.Pattern[str] | None:
        """The values of :data:`SHORT` characters or more, longest first (a value
        that holds another is masked whole), as one pattern."""
        return _values_pattern(self.values)

    def known(self, word: str) -> bool:
        """Whether ``word`` is a value the state has, or has had."""
        if word in self.values:
            return True
        from .state import value_digest

        if self.digests and value_digest(word, self.key) in self.digests:
            return True
        return any(value_digest(word, key) in digests for key, digests in self.keyed)


@functools.lru_cache(maxsize=4)
def _values_pattern(values: frozenset[str]) -> re.Pattern[str] | None:
    """:attr:`Secrets.pattern`, compiled once for the same values: every family of
    a root masks against every family's values, so 500 families that each mask an
    error (a check failed in each) share one pattern instead of compiling 500."""
    long = sorted((v for v in values if len(v) >= SHORT), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, long))) if long else None


#: what masking takes of state documents: values, and the ``seen`` digests by the
#: seen key they were made with ("" for the root's local digest key)
Collected = tuple[set[str], dict[str, set[str]]]


def state_values(state: State) -> Secrets:
    """What to mask for a family: the current values of every family of the root
    that has state (this one's as it is in memory, with what it would generate),
    the replaced values kept in clear, and the keyed digests of every value any
    entry has ever had. The stored families are read once a run."""
    if state.masking is None:
        values, groups = _collect([state.data])
        store = state.store
        if store is not None:
            if store.masking is None:
                store.masking = _collect(store.documents())
            values = values | store.masking[0]
            for hexkey, found in store.masking[1].items():
                groups[hexkey] = groups.get(hexkey, set()) | found
        local = groups.pop("", set())
        key = store.digest_key(write=False) if store is not None and local else b""
        keyed = tuple((bytes.fromhex(k), frozenset(d)) for k, d in sorted(groups.items()))
        state.masking = Secrets(frozenset(values), frozenset(local), key, keyed)
    return state.masking


def _collect(docs: list[dict[str, Any]]) -> Collected:
    """The values (current and previous) and the ``seen`` digests of state documents,
    by the seen key of their entry. An entry's digests are known by its key and by
    the local digest key too: those it kept before it had a key were made with that."""
    values: set[str] = set()
    groups: dict[str, set[str]] = {}
    for doc in docs:
        for section in ("modules", "generate"):
            for entry in doc.get(section, {}).values():
                values.update(str(v) for v in [entry.get("value"), *entry.get("previous", [])]
                              if v is not None and str(v))
                seen = entry.get("seen", [])
                if seen:
                    groups.setdefault("", set()).update(seen)
                    if isinstance(entry.get("seen_key"), str):
                        groups.setdefault(entry["seen_key"], set()).update(seen)
    return values, groups


def mask_text(text: str, values: Secrets) -> str:
    """``text`` with every known value masked: each of ``values.values`` (of
    :data:`SHORT` characters or more) wherever it is, every word of that length
    that is a known value, and a shorter one (an id) where it is a whole value."""
    if values.pattern is not None:
        text = values.pattern.sub(MASK, text)
    text = _WORD.sub(lambda m: _mask_word(m.group(0), values), text)
    return _VALUE.sub(lambda m: m.group(0) if not values.known(m.group("value")) else
                      m.group("lead") + m.group("q") + MASK + m.group("q") + m.group("tail"),
                      text)


def _mask_word(word: str, values: Secrets) -> str:
    """A word, or its dash-separated parts, masked if known (and long enough)."""
    if len(word) >= SHORT and values.known(word):
        return MASK
    if "-" not in word:
        return word
    return "-".join(MASK if len(p) >= SHORT and values.known(p) else p
                    for p in word.split("-"))


def scrub(text: str, state: State) -> str:
    """``text`` with every value of ``state`` masked."""
    return mask_text(text, state_values(state))


def mask(value: Any, paths: set[str], prefix: str = "") -> Any:
    """A copy of ``value`` with every path in ``paths`` replaced by ``********``."""
    if isinstance(value, dict):
        return {
            k: MASK if f"{prefix}{k}" in paths else mask(v, paths, f"{prefix}{k}.")
            for k, v in value.items()
        }
    return value


#: sections of a definition that hold credentials of a destination or of remote state
CREDENTIAL_SECTIONS = ("deploy", "state")
#: credential keys, by the sub-section of ``deploy`` (or ``state``) they are in
CREDENTIAL_KEYS = {
    "s3": ("key", "secret", "token", "session_token"),
    "ssh": ("password", "passphrase"),
    "storage_options": ("key", "secret", "token", "session_token", "password", "passphrase"),
}


def mask_url(url: Any) -> Any:
    """``sftp://user:pw@host/path`` -> ``sftp://user:********@host/path``."""
    if not isinstance(url, str):
        return url
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:{MASK}@{host}{slash}{path}"


def mask_credentials(definition: Any) -> Any:
    """A copy of a resolved definition with the credentials given in its ``deploy``
    and ``state`` sections (and its targets') masked: ``s3.key``, ``s3.secret``,
    ``ssh.password``, secrets in ``storage_options``, a password in ``url``."""
    if not isinstance(definition, dict):
        return definition
    out = dict(definition)
    for name in CREDENTIAL_SECTIONS:
        if isinstance(out.get(name), dict):
            out[name] = _mask_section(out[name])
    if isinstance(out.get("targets"), dict):
        out["targets"] = {t: mask_credentials(spec) for t, spec in out["targets"].items()}
    return out


def _mask_section(section: dict[str, Any]) -> dict[str, Any]:
    """One ``deploy`` or ``state`` section, its credentials masked."""
    out = dict(section)
    if "url" in out:
        out["url"] = mask_url(out["url"])
    for sub, keys in CREDENTIAL_KEYS.items():
        if isinstance(out.get(sub), dict):
            out[sub] = {k: MASK if k in keys and v is not None else v
                        for k, v in out[sub].items()}
    return out
