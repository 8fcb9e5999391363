"""``facs schema`` and ``facs completion``: what editors and shells read about
facs itself, a JSON Schema of definition files and a completion script."""

from __future__ import annotations

import argparse
import json

from ..errors import FacsimileError
from .common import out

SHELLS = ("bash", "zsh")


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema (draft 2020-12) of definition files."""
    from ..schema import definition_schema

    out(json.dumps(definition_schema(), indent=2))
    return 0


def completion_script(shell: str) -> str:
    """The completion script of ``facs`` for ``shell``, made from its parser by shtab."""
    try:
        import shtab
    except ImportError:
        raise FacsimileError("shell completion needs shtab: "
                             "pip install 'facsimile[completion]'") from None
    from . import make_parser

    return str(shtab.complete(make_parser(), shell=shell))


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the completion script of the shell named."""
    out(completion_script(args.shell).rstrip("\n"))
    return 0
