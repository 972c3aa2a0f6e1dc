r"""The one launcher for every paper.

  python -m experiments.main \
      --config=experiments/configs/<paper>.py:<variant> --workdir=<dir> \
      [--config.<key>=<value> ...]

Writes ``config.json``, ``metrics.jsonl``, TensorBoard events, ``checkpoints/``
and ``plots/`` into ``--workdir`` and ends by printing one ``final:`` line with
the final metrics as JSON (also saved as ``final.json``). Running the same
command again resumes from the last checkpoint.

Configs are locked ml_collections ConfigDicts: a misspelt ``--config.<key>`` is
an error naming the valid keys. Exit codes: 0 done, 1 bad flags, 2 missing data
or bad config, 3 non-finite training, 130 interrupted (checkpoint saved).
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxpapers.core import config as config_lib
from jaxpapers.core import registry
from jaxpapers.core import train as train_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config: experiments/configs/<paper>.py:<variant>.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for all outputs of the run.")
flags.mark_flags_as_required(["config", "workdir"])


def check_overrides(argv: list[str]) -> None:
    """Raises ``flags.Error`` naming the valid keys for a misspelt ``--config.<key>``."""
    spec, overrides = None, []
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
        elif arg.startswith(("--config.", "--noconfig.")):
            overrides.append(arg.split("=", 1)[0].split("config.", 1)[1])
    if spec is None or not overrides:
        return
    path, _, variant = spec.partition(":")
    try:
        config = config_lib.load_file(path, variant or None)
        for dotted in overrides:
            config_lib.check_key(config, dotted)
    except (FileNotFoundError, ValueError) as e:
        raise flags.Error(f"--config={spec}: {e}") from None
    except KeyError as e:
        raise flags.Error(e.args[0]) from None


def _parse_flags(argv: list[str]) -> list[str]:
    check_overrides(argv[1:])
    return flags.FLAGS(argv)


def _write_config(config, workdir: str) -> None:
    path = os.path.join(workdir, "config.json")
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() != text:
                logging.warning(
                    "%s differs from this run's config; resuming with the new one", path
                )
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class _QuietLibraries(std_logging.Filter):
    """Drops INFO chatter of orbax (a dozen lines per checkpoint); keeps warnings."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.get_absl_handler().addFilter(_QuietLibraries())
    config, workdir = _CONFIG.value, _WORKDIR.value
    os.makedirs(workdir, exist_ok=True)
    _write_config(config, workdir)
    try:
        run = registry.get(config.experiment)
        final = run(config, workdir)
    except (FileNotFoundError, ValueError, KeyError) as e:
        logging.exception("run failed")
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except train_lib.NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except train_lib.TrainingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        sys.exit(130)
    with open(os.path.join(workdir, "final.json"), "w", encoding="utf-8") as f:
        json.dump(final, f, indent=2, sort_keys=True)
    print("final: " + json.dumps(final, sort_keys=True), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
