"""The `multus-eni` command line: one subcommand per component.

Each component module exposes `register(subparsers)`; it adds its parser and sets
`func` to a callable taking the parsed arguments and returning an exit code. Modules
are imported only when listed here, so `multus-eni version` stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from multus_eni import __version__

# Modules providing subcommands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "multus_eni.sandbox.cli",
    "multus_eni.controller.cli",
    "multus_eni.agent.cli",
    "multus_eni.doctor",
    "multus_eni.demo",
    "multus_eni.podips_publish",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multus-eni",
        description="ENIs and IP addresses for Multus CNI on Amazon EKS.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = subparsers.add_parser("version", help="print the version")
    version.set_defaults(func=lambda _args: print(f"multus-eni {__version__}") or 0)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
