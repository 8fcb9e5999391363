"""Masking: how a generated value is hidden in what facsimile prints.

:data:`MASK` stands in for every value shown masked; :func:`mask` puts it
in place of the values at given dotted paths of a document;
:func:`mask_credentials` hides the credentials a definition gives for a
destination or for remote state; :func:`state_values` and :func:`mask_text`
hide a family's generated values in a text (a diff, an error), and
:func:`scrub` does both for one state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import State

MASK = "********"


def state_values(state: State) -> list[str]:
    """Every value of a family's state as text, current and previous, longest
    first (so a value that holds another is masked whole)."""
    values: set[str] = set()
    for section in ("modules", "generate"):
        for entry in state.data.get(section, {}).values():
            for v in [entry.get("value"), *entry.get("previous", [])]:
                if v is not None and len(str(v)) >= 1:
                    values.add(str(v))
    return sorted(values, key=len, reverse=True)


def mask_text(text: str, values: list[str]) -> str:
    """``text`` with each of ``values`` (of 4 characters or more) masked."""
    for s in values:
        if len(s) >= 4:
            text = text.replace(s, MASK)
    return text


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
