"""`highlight demo` (placeholder until the demo lands)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--moments", type=int, default=40)


def main(args: argparse.Namespace) -> int:
    print("highlight demo: not available yet")
    return 1
