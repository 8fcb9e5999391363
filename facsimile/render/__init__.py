"""Templates: the layer folders (:mod:`.layers`), read tracking (:mod:`.tracking`)
and the Jinja2 environment that renders one output (:mod:`.environment`).

Rendering records what it used: every template file loaded (the output's own,
and each include, import or extends, by name and resolved file) and every
context value read (by dotted path). :mod:`facsimile.build` stores digests of
those, never the values, in doit's database.
"""

from __future__ import annotations

from .environment import Rendered, compile_templates, make_environment, render
from .layers import LIB, LayerIndex, rel_to, walk
from .tracking import Tracked, lookup_path

__all__ = ["LIB", "LayerIndex", "Rendered", "Tracked", "compile_templates", "lookup_path",
           "make_environment", "rel_to", "render", "walk"]
