"""The rules for names that become paths, and for host names.

Instance names, module and subproject names, ``service.name`` stems and
relative folder paths from the definitions all end up in file and folder
names under ``BUILD/``; host names are filled into destination URLs and
folder names. Each rule is written once, here, and checked when the
definitions are read, so a name that would be refused later is an error
naming its definition file.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import DefinitionError
from .shapes import expect

#: instance names (dots separate subinstances) and ``service.name`` stems
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9][A-Za-z0-9_\-]*)*$")
#: module and subproject names: they name output files and folders (``{module}``,
#: ``BUILD/<instance>/<subproject>/``) and are one key of dotted paths
#: (``module.<name>.password``), so no dots, slashes or leading '-', '.' or '_'
MODULE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
#: host names: letters, digits and inner '.', '-', '_', or an IPv6 address in brackets
HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\]")
HOST_RULE = ("letters, digits, and '.', '-', '_' between them (no '..'), "
             "or an IPv6 address in brackets")


def host_problem(host: Any) -> str | None:
    """Why ``host`` cannot be a host name (it is filled into URLs and folder
    names, so ``/``, ``..``, ``?``, ``#`` or spaces would mix up destinations)."""
    if not isinstance(host, str) or not HOST_RE.fullmatch(host) or ".." in host:
        return f"host name {host!r} is not allowed: use {HOST_RULE}"
    return None


def check_host(host: Any, file: str, pointer: str) -> None:
    """A target's host name is one :func:`host_problem` accepts."""
    if host_problem(host) is not None:
        raise DefinitionError(f"{host!r} is not a valid host name: use {HOST_RULE}",
                              file=file, pointer=pointer)


def check_instance_name(name: str, file: str) -> None:
    """A top-level definition file's name is an instance name."""
    if name.startswith("_") or not NAME_RE.match(name):
        raise DefinitionError(
            f"{name!r} is not a valid instance name (letters, digits, '-', '_'; "
            "dots separate subinstances; no leading '_')",
            file=file,
        )


def check_module_name(name: Any, what: str, file: str, pointer: str) -> None:
    """A module or subproject name is one safe path segment (it names outputs)."""
    if not isinstance(name, str) or not MODULE_RE.match(name):
        raise DefinitionError(
            f"{what} name {name!r} is not allowed: use letters, digits, '-' and '_', "
            "starting with a letter or digit (it names output files and folders)",
            file=file,
            pointer=pointer,
        )


def check_service_name(stem: Any, file: str, pointer: str) -> None:
    """``service.name`` stems the daemons' output files (``<stem>.0``)."""
    if not isinstance(stem, str) or not NAME_RE.match(stem):
        raise DefinitionError(
            f"service.name {stem!r} is not allowed: use letters, digits, '-', '_' and "
            "inner dots (it names output files)",
            file=file,
            pointer=pointer,
        )


def check_relative_path(value: Any, what: str, file: str, pointer: str) -> None:
    """A non-empty relative path with no '..', '.' or empty segment."""
    expect(value, str, f"{what} must be a relative path", file, pointer)
    parts = value.split("/")
    if not value or value.startswith("/") or any(p in ("", ".", "..") for p in parts) \
            or "\0" in value:
        raise DefinitionError(
            f"{what} {value!r} must be a relative path like 'etc/app.json': not empty, "
            "not absolute, no '..', '.' or empty segments",
            file=file,
            pointer=pointer,
        )
