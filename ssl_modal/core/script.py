"""The command line every `recipes/<name>.py` script shares: `--config`, `--demo`, `key=value` overrides.

def run(config: MyConfig) -> None: ...
if __name__ == "__main__":
    sys.exit(recipe_main(run, MyConfig, "recipes/my.yaml", __doc__))
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .checkpoint import CheckpointError
from .config import ConfigError, load_config

T = TypeVar("T")

# Mistakes a user can make in a recipe, its data or its paths: printed as one line, without a traceback.
# OSError covers user-given paths that cannot be read or written (a folder under a file, no permission).
USER_ERRORS = (ConfigError, CheckpointError, ValueError, KeyError, OSError)


def user_message(exc: BaseException) -> str:
    """One line for a user error: OSErrors as '<path>: <reason>', KeyErrors without their quotes."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        other = f" -> {exc.filename2}" if exc.filename2 else ""
        if isinstance(exc, (NotADirectoryError, FileExistsError)):
            path = Path(str(exc.filename))
            blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
            if blocker is not None:
                return f"{exc.filename}: cannot create this folder: '{blocker}' is a file, expected a folder"
        return f"{exc.filename}{other}: {exc.strerror}"
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def report_user_error(exc: BaseException) -> int:
    """Print `exc` as a one-line error (or re-raise under SSL_MODAL_DEBUG=1) and return exit code 2."""
    if os.environ.get("SSL_MODAL_DEBUG"):
        raise exc
    print(f"error: {user_message(exc)}\n(set SSL_MODAL_DEBUG=1 to see the traceback)", file=sys.stderr)
    return 2


def recipe_main(
    run: Callable[[T], object], config_cls: type[T], default_config: str, doc: str | None, argv: list[str] | None = None
) -> int:
    """Parse the arguments, load the config (demo section merged with --demo) and call `run(config)`."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--config", default=default_config, help="recipe YAML")
    parser.add_argument("--demo", action="store_true", help="apply the recipe's demo: section (offline sample)")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_steps=100")
    args, extra = parser.parse_known_args(argv)  # flags and key=value overrides in any order
    unknown = [e for e in extra if "=" not in e or e.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = list(args.overrides) + extra
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(load_config(config_cls, args.config, args.overrides, demo=args.demo))
    except USER_ERRORS as exc:
        return report_user_error(exc)
    return 0
