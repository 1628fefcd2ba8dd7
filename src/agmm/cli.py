"""`agmm <verb>`: parse arguments, then call one library function.

Each pipeline stage registers its verbs in its own ``commands.py`` (a ``register(subparsers)``
function), so that adding a verb never touches this file's logic.
"""

from __future__ import annotations

import argparse
import importlib
import re
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

# A config override: a dotted key, '=', a value (a path such as runs/a=b/last.pt is not one).
OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")


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


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None):
    """``parser.parse_args``, except that for a verb with ``key=value`` overrides (train, demo,
    eval, predict, pseudo-labels) every such token is an override wherever it stands: before or
    after ``--resume [PATH]``, among predict's inputs or between options; argparse alone would
    take it as the optional PATH or an input, or reject it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    verb_at = next((i for i, token in enumerate(argv) if not token.startswith("-")), None)
    verb = verbs.get(argv[verb_at]) if verb_at is not None else None
    if verb is None or not any(action.dest == "overrides" for action in verb._actions):
        return parser.parse_args(argv)
    rest = argv[: verb_at + 1]
    overrides = []
    for token in argv[verb_at + 1 :]:
        (overrides if OVERRIDE.match(token) else rest).append(token)
    args = parser.parse_args(rest)
    args.overrides = overrides + list(args.overrides or [])
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AGMMError as error:
        print(f"agmm {args.command}: {type(error).__name__}: {error}", file=sys.stderr)
        for note in getattr(error, "__notes__", ()):  # e.g. what a failed run left behind
            print(f"agmm {args.command}: {note}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
