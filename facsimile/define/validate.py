"""Checks of the keys facsimile itself reads from a definition file.

Each definition's ``inherit``, ``targets``, ``deploy``, ``generate``,
``modules``, ``modes`` and ``validate`` (and the project's ``name``, ``class``, ``projects`` and
``state``) are
checked for type and shape when the file is read; a near-miss key name
('delpoy') is refused with a suggestion. Free keys are the user's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import DefinitionError, FacsimileError
from .checks import check_validate
from .names import (
    check_host,
    check_module_name,
    check_relative_path,
    check_service_name,
)
from .rollout import parse_rollout
from .shapes import check_glob_key, close_match, escape, expect, str_list, suggest, typename

#: keys of an instance definition that facsimile itself reads
INSTANCE_KEYS = ("inherit", "targets", "deploy", "generate", "modules", "modes", "validate")
#: keys of facsimile.json that belong to the project and are not inherited
PROJECT_ONLY_KEYS = ("name", "modules", "projects", "class", "state", "sandbox")
DEPLOY_KEYS = ("url", "exclude", "delete", "postcmd", "jobs", "ssh", "s3", "storage_options",
               "confirm", "keep", "rollout")
TARGET_KEYS = ("hosts", "files", "inherit", "recipients", "host_keys")
SUBPROJECT_KEYS = ("modules", "tmpl", "extra")
STATE_KEYS = ("recipients", "url", "ssh", "s3", "storage_options", "lock_timeout")
GENERATE_KINDS = ("password", "token", "uuid", "id")
#: a file mode in ``modes``: octal permission bits, "0640" or "640"
MODE_RE = re.compile(r"0?[0-7]{3}")


def _typo(key: str, known: tuple[str, ...], file: str, pointer: str) -> None:
    """Refuse a free key that is a near miss of a meaningful one ('delpoy')."""
    if key in known:
        return
    close = close_match(key, known)
    if close:
        raise DefinitionError(
            f"unknown key {key!r}, did you mean {close!r}?", file=file, pointer=pointer
        )


def parse_kind(spec: Any, file: str, pointer: str) -> tuple[str, int | None]:
    """``"token:32"`` -> ``("token", 32)``; errors name the file and key."""
    if not isinstance(spec, str):
        raise DefinitionError(
            f"a generate kind must be a string like 'password:24', not {typename(spec)}",
            file=file,
            pointer=pointer,
        )
    kind, _, arg = spec.partition(":")
    if kind not in GENERATE_KINDS:
        raise DefinitionError(
            f"unknown generate kind {kind!r} (one of {', '.join(GENERATE_KINDS)})"
            f"{suggest(kind, GENERATE_KINDS)}",
            file=file,
            pointer=pointer,
        )
    if not arg:
        return kind, None
    if kind in ("uuid", "id") or not arg.isdigit() or not 8 <= int(arg) <= 4096:
        raise DefinitionError(
            f"bad length in {spec!r}: password and token take ':N' with 8 <= N <= 4096",
            file=file,
            pointer=pointer,
        )
    return kind, int(arg)


def check_definition(data: dict[str, Any], file: str, *, is_project: bool = False) -> None:
    """Types of the keys facsimile reads; near-miss key names get a suggestion."""
    known = INSTANCE_KEYS + (PROJECT_ONLY_KEYS if is_project else ())
    for key in data:
        _typo(key, known, file, f"/{key}")
    if "inherit" in data:
        str_list(data["inherit"], "inherit", file, "/inherit")
    if "targets" in data:
        check_targets(data["targets"], file, "/targets")
    if "deploy" in data:
        check_deploy(data["deploy"], file, "/deploy")
    if "generate" in data:
        gen = data["generate"]
        expect(gen, dict, "generate must be an object of name: kind", file, "/generate")
        for name, spec in gen.items():
            parse_kind(spec, file, f"/generate/{name}")
    if "modules" in data and not is_project:
        normalize_modules(data["modules"], file, "/modules")
    if "modes" in data:
        check_modes(data["modes"], file, "/modes")
    if "validate" in data:
        check_validate(data["validate"], file, "/validate")
    if is_project:
        _check_project_keys(data, file)


def _check_project_keys(data: dict[str, Any], file: str) -> None:
    """The keys only ``facsimile.json`` has: ``name``, ``class``, ``projects``."""
    if "name" in data:
        expect(data["name"], str, "the project name must be a string", file, "/name")
        check_module_name(data["name"], "the project", file, "/name")  # etc/<name>.version
    if data.get("version") is not None:
        check_version(data["version"], file, "/version")
    if "class" in data:
        check_class(data["class"], file, "/class")
    if "projects" in data:
        check_projects(data["projects"], file, "/projects")
    if "state" in data:
        check_state_config(data["state"], file, "/state")
    if "sandbox" in data:
        expect(data["sandbox"], bool, "sandbox must be true or false", file, "/sandbox")


def check_state_config(config: Any, file: str, pointer: str) -> None:
    """``state``: ``recipients`` (age or ssh public keys, parsed now), ``url``, the
    remote's ``ssh``, ``s3`` and ``storage_options``, ``lock_timeout`` seconds."""
    expect(config, dict, "state must be an object", file, pointer)
    for key, value in config.items():
        p = f"{pointer}/{escape(key)}"
        if key not in STATE_KEYS:
            hint = suggest(key, STATE_KEYS) or f" (known: {', '.join(STATE_KEYS)})"
            raise DefinitionError(f"unknown key {key!r} in state{hint}", file=file, pointer=p)
        if key == "recipients":
            _check_recipients(value, file, p)
        elif key == "url":
            expect(value, str, "state.url must be a string (an fsspec URL)", file, p)
        elif key == "lock_timeout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise DefinitionError("state.lock_timeout must be a number of seconds",
                                      file=file, pointer=p)
        else:
            expect(value, dict, f"state.{key} must be an object", file, p)


def _check_recipients(value: Any, file: str, pointer: str) -> None:
    """A list of public keys that age can encrypt to; a bad one names its index."""
    from ..errors import StateError
    from ..state.crypt import parse_recipients

    str_list(value, "state.recipients", file, pointer)
    try:
        parse_recipients(value)
    except StateError as exc:
        where = pointer + (exc.pointer or "").removeprefix("/recipients")
        raise DefinitionError(exc.message, file=file, pointer=where) from None


def check_version(version: Any, file: str, pointer: str) -> None:
    """A ``version`` is a string or a number; a string names ``SRC/<name>-<version>/``,
    so it is a relative path (a tag may hold '/', never '..')."""
    if isinstance(version, bool) or not isinstance(version, (str, int, float)):
        raise DefinitionError(f"version must be a string or a number, not {typename(version)}",
                              file=file, pointer=pointer)
    if isinstance(version, str):
        check_relative_path(version, "version", file, pointer)


def check_class(spec: Any, file: str, pointer: str) -> None:
    """``class``: ``module.path:ClassName``, each part a Python name (the module is
    a file found from the root, so no '/' or '..')."""
    expect(spec, str, "class must be 'module.path:ClassName'", file, pointer)
    modname, _, clsname = spec.partition(":")
    if not clsname.isidentifier() or not all(p.isidentifier() for p in modname.split(".")):
        raise DefinitionError(f"class {spec!r} must look like 'module.path:ClassName'",
                              file=file, pointer=pointer)


def check_projects(projects: Any, file: str, pointer: str) -> None:
    """``projects``: a list of subproject names, or name -> ``{modules, tmpl, extra, ...}``."""
    expect(projects, (dict, list), "projects must be an object or a list", file, pointer)
    if isinstance(projects, list):
        for i, name in enumerate(projects):
            p = f"{pointer}/{i}"
            expect(name, str, "projects as a list must be a list of subproject names",
                   file, p)
            check_module_name(name, "subproject", file, p)
            if name in projects[:i]:
                raise DefinitionError(f"subproject {name!r} is named twice", file=file,
                                      pointer=p)
        return
    for name, spec in projects.items():
        p = f"{pointer}/{escape(name)}"
        check_module_name(name, "subproject", file, p)
        if spec is None:
            continue
        expect(spec, dict, f"subproject {name!r} must be an object", file, p)
        for key in spec:
            _typo(key, SUBPROJECT_KEYS, file, f"{p}/{escape(key)}")
        if "modules" in spec:
            normalize_modules(spec["modules"], file, f"{p}/modules")
        for key in ("tmpl", "extra"):
            if key in spec:
                check_relative_path(spec[key], f"the subproject's {key} folder", file,
                                    f"{p}/{key}")


def check_targets(targets: Any, file: str, pointer: str) -> None:
    """``targets``: name -> ``{hosts, files, inherit}``; every host name is one."""
    expect(targets, dict, "targets must be an object of name: target", file, pointer)
    for name, target in targets.items():
        p = f"{pointer}/{name}"
        if target is None:
            continue
        expect(target, dict, f"target {name!r} must be an object", file, p)
        for key in target:
            _typo(key, TARGET_KEYS, file, f"{p}/{key}")
        if "hosts" in target:
            str_list(target["hosts"], "hosts", file, f"{p}/hosts")
            for i, host in enumerate(target["hosts"]):
                check_host(host, file, f"{p}/hosts/{i}")
        if "files" in target:
            str_list(target["files"], "files", file, f"{p}/files")
        if "inherit" in target:
            str_list(target["inherit"], "inherit", file, f"{p}/inherit")
        check_target_keys(target, file, p)


def check_target_keys(target: dict[str, Any], file: str, pointer: str) -> None:
    """``recipients`` (age or ssh public keys) and ``host_keys`` ({host: ssh public
    key}) that ``facs publish`` encrypts a target's secrets to."""
    keys = []
    if "recipients" in target:
        str_list(target["recipients"], "recipients", file, f"{pointer}/recipients")
        keys += [(k, f"{pointer}/recipients/{i}") for i, k in enumerate(target["recipients"])]
    if "host_keys" in target:
        hk = target["host_keys"]
        expect(hk, dict, 'host_keys must be an object of host: "ssh-ed25519 AAAA..."',
               file, f"{pointer}/host_keys")
        for host, key in hk.items():
            check_host(host, file, f"{pointer}/host_keys/{escape(host)}")
            expect(key, str, "a host key must be a string", file,
                   f"{pointer}/host_keys/{escape(host)}")
            keys.append((key, f"{pointer}/host_keys/{escape(host)}"))
    if keys:
        from ..state.crypt import parse_recipients  # pyrage: only when keys are given

        for key, p in keys:
            try:
                parse_recipients([key])
            except FacsimileError as exc:
                raise DefinitionError(exc.message, file=file, pointer=p) from None


def parse_mode(text: Any) -> int | None:
    """``"0640"`` or ``"640"`` -> ``0o640``; ``None`` for anything else, and for a
    mode its owner cannot read (the build reads every output back)."""
    if not isinstance(text, str) or not MODE_RE.fullmatch(text):
        return None
    mode = int(text, 8)
    return mode if mode & 0o400 else None


def check_modes(modes: Any, file: str, pointer: str) -> None:
    """``modes``: output glob -> octal mode string; the globs are sync's
    (``targets.files``), so the same relative, ``..``-free patterns."""
    if modes is None:
        return
    expect(modes, dict, 'modes must be an object of glob: mode, like {"etc/app/*.ini": "0640"}',
           file, pointer)
    for glob, mode in modes.items():
        p = f"{pointer}/{escape(glob)}"
        check_glob_key(glob, "modes", file, p)
        if mode is not None and parse_mode(mode) is None:
            raise DefinitionError(
                f"bad mode {mode!r} for {glob!r}: an octal string like '0640' or '640', "
                "readable by its owner",
                file=file, pointer=p)


def check_deploy(deploy: Any, file: str, pointer: str) -> None:
    """``deploy``: only its known keys, each of its type."""
    expect(deploy, dict, "deploy must be an object", file, pointer)
    for key, value in deploy.items():
        p = f"{pointer}/{key}"
        if key not in DEPLOY_KEYS:
            raise DefinitionError(
                f"unknown key {key!r} in deploy{suggest(key, DEPLOY_KEYS)}"
                + ("" if suggest(key, DEPLOY_KEYS) else f" (known: {', '.join(DEPLOY_KEYS)})"),
                file=file,
                pointer=p,
            )
        if key == "url":
            expect(value, str, "deploy.url must be a string", file, p)
        elif key in ("exclude", "delete", "postcmd"):
            str_list(value, f"deploy.{key}", file, p)
        elif key == "jobs":
            expect(value, int, "deploy.jobs must be a whole number", file, p)
        elif key == "confirm":
            if not isinstance(value, bool | str):
                expect(value, bool, "deploy.confirm must be true, false or a word", file, p)
        elif key == "keep":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise DefinitionError("deploy.keep must be a whole number of generations, "
                                      "0 or more", file=file, pointer=p)
        elif key == "rollout":
            try:
                parse_rollout(value)
            except DefinitionError as exc:
                raise DefinitionError(exc.message, file=file, pointer=p) from None
        else:
            expect(value, dict, f"deploy.{key} must be an object", file, p)


def normalize_modules(raw: Any, file: str, pointer: str = "") -> dict[str, dict[str, Any]]:
    """Modules as ``{name: definition}`` from the seed's list form or an object."""
    if isinstance(raw, list):
        return _modules_from_list(raw, file, pointer)
    if isinstance(raw, dict):
        return _modules_from_object(raw, file, pointer)
    raise DefinitionError(
        f"modules must be a list of objects or an object, not {typename(raw)}",
        file=file,
        pointer=pointer or "/",
    )


def _modules_from_list(raw: list[Any], file: str, pointer: str) -> dict[str, dict[str, Any]]:
    """``[{"name": "app", ...}, ...]``: each item names its module."""
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise DefinitionError(
                'each module in a list must be an object with a "name" string',
                file=file,
                pointer=f"{pointer}/{i}",
            )
        check_module_name(item["name"], "module", file, f"{pointer}/{i}/name")
        if item["name"] in out:
            raise DefinitionError(
                f"module {item['name']!r} is defined twice", file=file, pointer=f"{pointer}/{i}"
            )
        check_module(item, file, f"{pointer}/{i}")
        out[item["name"]] = {k: v for k, v in item.items() if k != "name"}
    return out


def _modules_from_object(raw: dict[str, Any], file: str,
                         pointer: str) -> dict[str, dict[str, Any]]:
    """``{"app": {...}, ...}``: a null module is an empty one."""
    out: dict[str, dict[str, Any]] = {}
    for name, item in raw.items():
        check_module_name(name, "module", file, f"{pointer}/{escape(name)}")
        if item is None:
            item = {}
        if not isinstance(item, dict):
            raise DefinitionError(
                f"module {name!r} must be an object, not {typename(item)}",
                file=file,
                pointer=f"{pointer}/{name}",
            )
        check_module(item, file, f"{pointer}/{name}")
        out[name] = {k: v for k, v in item.items() if k != "name"}
    return out


def check_module(item: Mapping[str, Any], file: str, pointer: str) -> None:
    """Keys of a module that name output files stay inside ``BUILD/<instance>/``."""
    if item.get("genconfig_path") is not None:
        check_relative_path(item["genconfig_path"], "genconfig_path", file,
                            f"{pointer}/genconfig_path")
    if item.get("version") is not None:  # a source checkout's SRC/<name>-<version>/
        check_version(item["version"], file, f"{pointer}/version")
    service = item.get("service")
    if isinstance(service, dict) and service.get("name") is not None:
        check_service_name(service["name"], file, f"{pointer}/service/name")
