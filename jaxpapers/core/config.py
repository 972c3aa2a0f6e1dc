"""Loading experiment configs outside the launcher (notebooks, tests, scripts).

Configs live in ``experiments/configs/<paper>.py`` and expose
``get_config(variant) -> ml_collections.ConfigDict`` (locked). :func:`load`
imports such a file by path and applies dotted overrides with the same
checking as the launcher: a misspelt key is an error naming the valid keys.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

import ml_collections


def load_file(path: str, variant: str | None = None) -> ml_collections.ConfigDict:
    """``get_config(variant)`` of the config file at ``path``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no config file at {path!r}")
    name = "_jaxpapers_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def check_key(config: ml_collections.ConfigDict, dotted: str) -> None:
    """Raises ``KeyError`` naming the valid keys if ``dotted`` is not in ``config``."""
    node, walked = config, []
    for part in dotted.split("."):
        keys = list(node.keys()) if hasattr(node, "keys") else []
        if part not in keys:
            where = "config." + ".".join(walked) if walked else "config"
            raise KeyError(
                f"unknown config key {dotted!r}: {where} has no {part!r}; valid keys there: "
                f"{', '.join(sorted(keys)) or '(none: it is a value)'}"
            )
        node, walked = node[part], walked + [part]


def override(
    config: ml_collections.ConfigDict, values: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """Sets dotted keys (``{"train.batch_size": 64}``) on a locked config, checked."""
    for dotted, value in values.items():
        check_key(config, dotted)
        *path, leaf = dotted.split(".")
        node = config
        for part in path:
            node = node[part]
        node[leaf] = value
    return config


def load(path: str, variant: str | None = None, **overrides: Any) -> ml_collections.ConfigDict:
    """Loads a config file and applies ``key__sub=value`` overrides (``__`` = ``.``)."""
    config = load_file(path, variant)
    return override(config, {k.replace("__", "."): v for k, v in overrides.items()})
