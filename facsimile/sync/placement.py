"""Which host gets which files of the build.

Each target's ``files`` patterns (``{host}``, ``{target}``, ``{instance}`` and
``{project}`` filled in for each of its hosts) less ``deploy.exclude`` choose
among the build's files; a file a ``{host}`` fan-out template made for host H
(``host_of``: the build says which, :func:`facsimile.sync.run.host_outputs`)
goes to H only. Hosts whose ``deploy.url`` fills to the same destination share
one ``Job`` with the union of their files. ``uncovered`` names the outputs no
host receives.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..define.names import host_problem
from ..errors import SyncError
from ..globs import check_pattern, glob_regex, matcher, matches
from .host import Job
from .urls import DEFAULT_URL, fill

#: placeholders a target's ``files`` pattern may use
GLOB_KEYS = ("host", "target", "instance", "project")


@dataclass
class Placed:
    """One destination before filtering: its targets, hosts and files."""

    url: str
    targets: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    files: dict[str, Any] = field(default_factory=dict)


def chosen(tname: str, spec: Mapping[str, Any], files: Mapping[str, Any],
           exclude: list[re.Pattern[str]], values: Mapping[str, str],
           host_of: Mapping[str, str]) -> dict[str, Any]:
    """The files of the build that host ``values["host"]`` of target ``tname`` gets."""
    regexes = []
    patterns = list((spec or {}).get("files") or ["**"])
    for p in patterns:
        check_pattern(p, f"targets.{tname}.files pattern")
        filled = fill(p, values) if "{" in p else p
        check_pattern(filled, f"targets.{tname}.files pattern")
        regexes.append(glob_regex(filled))
    host = values["host"]
    take = None if "**" in patterns else matcher(regexes)  # None: every file
    skip = matcher(exclude)
    return {rel: f for rel, f in files.items()
            if (not host_of or host_of.get(rel, host) == host)
            and (take is None or take(rel)) and (skip is None or not skip(rel))}


def destinations(*, instance: str, project: str, root: Path, deploy: Mapping[str, Any],
                 targets: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """Each host of each target as ``(url, target, host)``, in the order ``place``
    takes them (the files aside)."""
    out = []
    for tname, spec in sorted(targets.items()):
        for h in (spec or {}).get("hosts", []):
            problem = host_problem(h)
            if problem:
                raise SyncError(f"instance {instance}, target {tname}: {problem}")
            values = {"host": h, "instance": instance, "target": tname, "project": project}
            out.append((fill(str(deploy.get("url") or DEFAULT_URL),
                             {**values, "root": quote(str(root), safe="/")}), tname, h))
    return out


def place(*, instance: str, project: str, root: Path, deploy: Mapping[str, Any],
          targets: Mapping[str, Mapping[str, Any]], files: Mapping[str, Any],
          host_of: Mapping[str, str] | None = None) -> list[Placed]:
    """Every destination of the instance with the files it gets (no filter)."""
    exclude = [glob_regex(p) for p in deploy.get("exclude", [])]
    by_url: dict[str, Placed] = {}
    for url, tname, h in destinations(instance=instance, project=project, root=root,
                                      deploy=deploy, targets=targets):
        values = {"host": h, "instance": instance, "target": tname, "project": project}
        placed = by_url.setdefault(url, Placed(url))
        if tname not in placed.targets:
            placed.targets.append(tname)
        if h not in placed.hosts:
            placed.hosts.append(h)
        placed.files.update(chosen(tname, targets[tname], files, exclude, values,
                                   host_of or {}))
    return list(by_url.values())


def jobs_of(placed: Iterable[Placed], target: str | None, host: str | None) -> list[Job]:
    """The jobs ``--target`` and ``--host`` leave (each with all its files)."""
    return [Job("+".join(p.targets), p.hosts[0] if host is None else host, p.url,
                dict(sorted(p.files.items())))
            for p in placed
            if (target is None or target in p.targets) and (host is None or host in p.hosts)]


def uncovered(placed: Iterable[Placed], files: Iterable[str],
              exclude: Iterable[str] = ()) -> list[str]:
    """The files that no host receives (``deploy.exclude`` ones aside: never pushed
    by intent)."""
    got: set[str] = set()
    for p in placed:
        got |= set(p.files)
    skip = [glob_regex(p) for p in exclude]
    return sorted(rel for rel in files if rel not in got and not matches(rel, skip))
