"""The ``llamaeval`` command line: one subcommand module per job.

Each private module below exposes ``register(subparsers)``, which adds its
subcommands and sets ``func(args) -> int`` (the exit code) on each parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands, in the order they appear in --help.
_COMMAND_MODULES = ("llamaeval.cli._serve", "llamaeval.cli._worker", "llamaeval.cli._bench", "llamaeval.cli._judge",
                    "llamaeval.cli._ship", "llamaeval.cli._gate")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="llamaeval",
        description="Benchmark LlamaCloud-style retrieval pipelines, or serve one locally.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command module is not written yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 failure, 2 bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from llamaeval._errors import LlamaEvalError

    try:
        return int(args.func(args) or 0)
    except LlamaEvalError as exc:
        print(f"llamaeval {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"llamaeval {args.command}: interrupted", file=sys.stderr)
        return 130
