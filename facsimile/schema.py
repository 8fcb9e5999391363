"""A JSON Schema (draft 2020-12) of definition files, for editors (``facs schema``).

It describes the keys facsimile itself reads (:mod:`facsimile.define.validate`
checks the same keys when a file is read): their types and what they mean.
Every other key is the user's free template data, so ``additionalProperties``
stays allowed everywhere facsimile does not own the whole object. The schema
is a help for editing, not the check: a file it accepts can still be refused
by the build (a host name with a space, a near-miss key like ``delpoy``).

``$defs.modules`` describes ``define/modules.json`` (a list or an object of
modules); ``define/schema.json`` is jsonmerge's merge schema, not a definition.
"""

from __future__ import annotations

from typing import Any

from .define.checks import BUILTINS, DEFAULT_TIMEOUT
from .define.validate import GENERATE_KINDS

SCHEMA_ID = "https://facsimile.invalid/schema/definition-1.json"

_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}


def _strings(description: str) -> dict[str, Any]:
    """A list of strings with ``description``."""
    return {**_STRINGS, "description": description}


def _target() -> dict[str, Any]:
    """One entry of ``targets``."""
    return {
        "type": ["object", "null"],
        "description": "A group of hosts that receive some of the instance's files "
                       "(null removes an inherited target).",
        "properties": {
            "hosts": _strings("Host names (or [IPv6] literals) the files are pushed to."),
            "files": _strings("Globs of output paths, relative to BUILD/<instance>/, this "
                              "target receives (default: all)."),
            "inherit": _strings("Other targets of the instance whose settings this one "
                                "starts from."),
            "recipients": _strings("age or ssh public keys that `facs publish` encrypts "
                                   "the target's secrets to."),
            "host_keys": {"type": "object", "additionalProperties": {"type": "string"},
                          "description": "host: its ssh public key; a host's own secrets "
                                         "are published encrypted to it alone."},
        },
        "additionalProperties": True,
    }


def _deploy() -> dict[str, Any]:
    """``deploy``: where and how ``facs sync`` pushes; facsimile owns every key."""
    obj = {"type": "object", "additionalProperties": True}
    return {
        "type": "object",
        "description": "How `facs sync` pushes the build to each host.",
        "properties": {
            "url": {"type": "string", "description": "Destination per host, with {root}, "
                    "{instance}, {host}, {target}, {project} filled in: file://, ssh:// "
                    "or s3://."},
            "exclude": _strings("Globs of destination files sync neither writes nor deletes."),
            "delete": _strings("Folders at the destination where files the build no longer "
                               "makes are deleted."),
            "postcmd": _strings("Commands run on each host after files changed there."),
            "jobs": {"type": "integer", "minimum": 1,
                     "description": "Hosts pushed to in parallel."},
            "ssh": {**obj, "description": "Options of the ssh:// backend (sshfs)."},
            "s3": {**obj, "description": "Options of the s3:// backend (s3fs)."},
            "storage_options": {**obj, "description": "Options passed to the fsspec backend."},
            "confirm": {"type": ["boolean", "string"],
                        "description": "Ask before pushing (true), or the word the operator "
                                       "must type (e.g. the instance name)."},
            "keep": {"type": "integer", "minimum": 0,
                     "description": "Generations each host keeps for facs rollback "
                                    "(default 3; 0 keeps none)."},
            "rollout": {
                "type": "object", "additionalProperties": False,
                "description": "Push in waves, health-check each host, roll a failing "
                               "wave back.",
                "properties": {
                    "waves": {"type": "array", "items": {"type": ["integer", "string"]},
                              "description": "Wave sizes: hosts or \"N%\"; the last "
                                             "repeats."},
                    "check": {"type": ["string", "array"], "items": {"type": "string"},
                              "description": "Health check commands, with {host}, "
                                             "{target}, {path}."},
                    "check_timeout": {"type": "number", "minimum": 0},
                    "max_failed": {"type": ["integer", "string"],
                                   "description": "Hosts that may fail (or \"N%\") before "
                                                  "the sync stops."},
                    "pause": {"type": "number", "minimum": 0,
                              "description": "Seconds between waves."},
                },
            },
        },
        "additionalProperties": False,
    }


def _module() -> dict[str, Any]:
    """One module of ``modules``."""
    return {
        "type": ["object", "null"],
        "description": "A module: free data templates see as module.<name>, plus the "
                       "keys below.",
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$",
                     "description": "The module's name (in the list form)."},
            "username": {"type": "string", "description": "Its user (default: its name); "
                         "its password is generated state."},
            "repo": {"type": "string", "description": "A git repository checked out at "
                     "version (a path is relative to the root)."},
            "version": {"type": "string", "description": "The git revision of repo."},
            "genconfig": {"type": "boolean", "description": "Write its definition as JSON."},
            "genconfig_path": {"type": "string", "description": "Where genconfig writes, "
                               "relative to BUILD/<instance>/."},
            "service": {"type": "object", "additionalProperties": True,
                        "description": "Daemons it runs: n_instances, name.",
                        "properties": {"n_instances": {"type": "integer", "minimum": 0},
                                       "name": {"type": "string"}}},
        },
        "additionalProperties": True,
    }


def _check() -> dict[str, Any]:
    """One check of ``validate``: a built-in's name, a command, or both with a timeout."""
    spec = {"type": "string", "anyOf": [{"enum": list(BUILTINS)}, {"pattern": "\\{path\\}"}],
            "description": "A built-in parser, or a command with {path} (run by the shell "
                           "in the root; exit 0 passes)."}
    return {
        "oneOf": [spec, {
            "type": "object", "required": ["check"], "additionalProperties": False,
            "properties": {"check": spec, "timeout": {
                "type": "number", "exclusiveMinimum": 0,
                "description": f"Seconds before it is killed (default {DEFAULT_TIMEOUT:g})."}},
        }],
    }


def _modules() -> dict[str, Any]:
    """``modules``: a list of modules with names, or an object by name."""
    return {
        "description": "Modules: a list of objects with a name, or an object of name: module.",
        "oneOf": [
            {"type": "array", "items": {"allOf": [{"$ref": "#/$defs/module"},
                                                  {"type": "object", "required": ["name"]}]}},
            {"type": "object", "additionalProperties": {"$ref": "#/$defs/module"},
             "propertyNames": {"pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$"}},
        ],
    }


def _properties() -> dict[str, Any]:
    """The top-level keys facsimile reads."""
    kinds = "|".join(GENERATE_KINDS)
    return {
        "inherit": _strings("Definitions (define/<name>.json without .json) merged under "
                            "this one, first to last."),
        "targets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/target"},
                    "description": "Target name: the hosts and files it receives."},
        "deploy": {"$ref": "#/$defs/deploy"},
        "generate": {
            "type": "object",
            "description": "Values generated once per instance family into state: name: kind.",
            "additionalProperties": {
                "type": "string", "pattern": f"^(password|token)(:[0-9]+)?$|^({kinds})$",
                "description": "password, token (optionally :N, 8 <= N <= 4096), uuid or id."},
        },
        "modules": {"$ref": "#/$defs/modules"},
        "modes": {
            "type": ["object", "null"],
            "description": "Output glob: octal file mode, like {\"etc/app/*.ini\": \"0640\"}.",
            "additionalProperties": {"type": ["string", "null"], "pattern": "^0?[0-7]{3}$"},
        },
        "validate": {
            "type": ["object", "null"],
            "description": "Output glob: the checks its outputs must pass before they are "
                           "moved into BUILD/: a built-in parser (" + ", ".join(BUILTINS)
                           + "), a command naming the file as {path} (like \"nginx -t -c "
                           "{path}\"), {\"check\": ..., \"timeout\": seconds}, or a list "
                           "of those.",
            "additionalProperties": {
                "anyOf": [{"$ref": "#/$defs/check"}, {"type": "null"},
                          {"type": "array", "items": {"$ref": "#/$defs/check"}}]},
        },
        "sandbox": {"type": "boolean", "description": "Render templates in Jinja2's "
                    "sandbox (facsimile.json only); templates are code otherwise."},
        "state": {
            "type": "object", "additionalProperties": True,
            "description": "Where generated state is kept and who can read it.",
            "properties": {
                "recipients": _strings("age recipients (age1... or ssh public keys) the "
                                       "state is encrypted to."),
                "url": {"type": "string", "description": "Remote state store: file://, "
                        "ssh:// or s3://."},
            },
        },
        "name": {"type": "string", "description": "facsimile.json: the project's name."},
        "version": {"type": ["string", "number"],
                    "description": "facsimile.json: the project's version (written to "
                                   "BUILD/<instance>/<project>/VERSION)."},
        "class": {"type": "string", "pattern": "^[A-Za-z_][\\w.]*:[A-Za-z_]\\w*$",
                  "description": "facsimile.json: 'module.path:ClassName', a Project "
                                 "subclass importable from the root."},
        "projects": {"type": ["object", "array"],
                     "description": "facsimile.json: subprojects, a list of names or "
                                    "name: {modules, tmpl, extra}."},
    }


def definition_schema() -> dict[str, Any]:
    """The JSON Schema of a definition file (an instance's, a role's, facsimile.json)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "facsimile definition",
        "description": "A definition file of facsimile (define/*.json). Keys not listed "
                       "are free template data, seen by templates as instance.<key>.",
        "type": "object",
        "properties": _properties(),
        "additionalProperties": True,
        "$defs": {"target": _target(), "deploy": _deploy(), "module": _module(),
                  "modules": _modules(), "check": _check()},
    }
