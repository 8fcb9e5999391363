"""Where a sync writes: one backend per URL scheme, each in its own module
(``local`` for ``file://``, ``ssh`` for ``sftp://`` and ``ssh://`` with
``sshwire``, its commands and connections, and ``sftpops``, its SFTP
requests; ``s3`` for ``s3://``), each a ``Destination`` subclass registering its opener with
``base.register``. ``open_destination`` checks what every URL must satisfy,
then hands it to the opener of its scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from ...errors import SyncError
from ..urls import shown_url
from .base import OPENERS, PRIMARY, Destination, Location

# each built-in backend registers its schemes; errors list them in this order
# isort: off
from . import local  # noqa: F401
from . import ssh  # noqa: F401
from . import s3  # noqa: F401
# isort: on

__all__ = ["Destination", "open_destination"]


def open_destination(url: str, deploy: Mapping[str, Any], label: str,
                     ahead: bool = False) -> Destination:
    """The destination behind ``url`` (already filled in); ``ahead``: opened
    ahead of its use, to be warmed (see ``Destination.warm``)."""
    parts = urlsplit(url)
    scheme = parts.scheme or "file"
    path = unquote(parts.path)
    shown = shown_url(url)
    if "?" in url or "#" in url:
        raise SyncError(f"destination {shown!r} has a '?' or '#': a URL query or fragment "
                        "is not a place (write them as %3F and %23 in a path)")
    if ".." in path.split("/"):
        raise SyncError(f"destination {shown!r} has '..' in its path")
    opener = OPENERS.get(scheme)
    if opener is None:
        known = ", ".join(f"{s}://" for s in PRIMARY)
        raise SyncError(f"unsupported destination scheme {scheme!r} in {shown!r} ({known})")
    where = Location(url, parts, path, shown, dict(deploy.get("storage_options") or {}), ahead)
    return opener(where, deploy, label)
