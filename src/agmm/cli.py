"""`agmm <verb>`: parse arguments, then call one library function.

Each pipeline stage registers its verbs in its own ``commands.py`` (a ``register(subparsers)``
function), so that adding a verb never touches this file's logic.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from agmm import __version__
from agmm.errors import AGMMError

# Modules whose ``register(subparsers)`` adds verbs, in the order `agmm --help` lists them.
COMMAND_MODULES = (
    "agmm.engine.commands",  # demo, train
    "agmm.eval.commands",  # eval, predict, pseudo-labels, export, report
    "agmm.data.commands",  # check-labels, make-labels
    "agmm.seeds.commands",  # seeds
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agmm",
        description="AGMM++ weakly-supervised semantic segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"agmm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<verb>")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is None or not (module_name + ".").startswith(error.name + "."):
                raise  # a real import error inside that stage, not a missing stage
            continue  # that stage has no verbs yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AGMMError as error:
        print(f"agmm {args.command}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
