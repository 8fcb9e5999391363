"""Destination URLs: the ``deploy.url`` template (``DEFAULT_URL``) and how it is
filled (``fill``), and the form of a URL fit for output, its password masked
(``shown_url``). The host names filled into it follow the one rule of
:mod:`facsimile.define.names`.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from ..errors import SyncError

DEFAULT_URL = "file://{root}/DEPLOY/{instance}/{host}"

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
