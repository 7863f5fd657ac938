"""The ``lstmkit`` command: thin entry points only."""

from __future__ import annotations

import argparse
import sys


def cli_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lstmkit", description="LSTM networks for PyTorch.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("demo", help="a short tour of the library (what `make demo` runs)")
    sub.add_parser(
        "bench", help="CPU speed table against torch.nn.LSTM (see --help)", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.version:
        from lstmkit import __version__

        print(__version__)
        return 0
    if args.command == "bench":
        from lstmkit import bench

        return bench.main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        from lstmkit import showcase

        return showcase.main()
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main())
