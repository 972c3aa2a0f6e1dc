"""Experiment registry: a config's ``experiment`` name -> the function that runs it.

An entry is ``"module:function"``, imported only when asked for, so listing or
launching one paper never imports another family's dependencies. The function
takes ``(config, workdir)``, writes everything into ``workdir`` and returns the
final metrics as a flat dict of numbers (printed by the launcher as ``final:``).

Adding a paper is one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

RunFn = Callable[[Any, str], dict]

_EXPERIMENTS: dict[str, str | RunFn] = {
    "fgcnn": "jaxpapers.recsys.fgcnn:run",
    "cammsr": "jaxpapers.recsys.cammsr:run",
    "qarm": "jaxpapers.recsys.qarm:run",
    "em3": "jaxpapers.recsys.em3:run",
    "afcl": "jaxpapers.analytic.afcl:run",
    "acu": "jaxpapers.analytic.acu:run",
    "deepafl": "jaxpapers.analytic.deepafl:run",
    "aptshield": "jaxpapers.security.provenance.aptshield:run",
    "bfad": "jaxpapers.security.webshell.bfad:run",
    "ciard": "jaxpapers.robust.ciard:run",
    "ladeep": "jaxpapers.physics.ladeep:run",
    "fildeep": "jaxpapers.physics.fildeep:run",
    "unisoma": "jaxpapers.physics.multisolid:run",
    "fisale": "jaxpapers.physics.fluidsolid:run",
}


def names() -> list[str]:
    return sorted(_EXPERIMENTS)


def register(name: str, run: str | RunFn, *, overwrite: bool = False) -> None:
    """Adds an experiment (a callable or a lazy ``"module:function"`` path)."""
    if name in _EXPERIMENTS and not overwrite:
        raise ValueError(f"experiment {name!r} is already registered")
    _EXPERIMENTS[name] = run


def get(name: str) -> RunFn:
    """The run function of experiment ``name``."""
    try:
        entry = _EXPERIMENTS[name]
    except KeyError:
        raise KeyError(f"unknown experiment {name!r}; registered: {', '.join(names())}") from None
    if callable(entry):
        return entry
    module_name, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module_name), attr)
