"""Destination URLs: the ``deploy.url`` template (``DEFAULT_URL``) and how it is
filled (``fill``), the rule for the host names filled into it
(``host_problem``), and the form of a URL fit for output, its password masked
(``shown_url``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import SyncError

DEFAULT_URL = "file://{root}/DEPLOY/{instance}/{host}"

HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\]")
HOST_RULE = ("letters, digits, and '.', '-', '_' between them (no '..'), "
             "or an IPv6 address in brackets")


def host_problem(host: Any) -> str | None:
    """Why ``host`` cannot be a host name (it is filled into URLs and folder
    names, so ``/``, ``..``, ``?``, ``#`` or spaces would mix up destinations)."""
    if not isinstance(host, str) or not HOST_RE.fullmatch(host) or ".." in host:
        return f"host name {host!r} is not allowed: use {HOST_RULE}"
    return None


def shown_url(url: str) -> str:
    """``url`` fit for output: a password in it is masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with its ``{name}`` placeholders replaced from ``values``."""
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise SyncError(f"cannot fill {template!r}: unknown placeholder {exc} "
                        f"(known: {', '.join('{' + k + '}' for k in values)})") from None
