"""The `hark` command line: train on a laptop, run and deploy on a microcontroller."""
import argparse
import importlib
import sys
import warnings

from hark import __version__

# Subcommand -> module in hark.commands, in the order a user meets them.
COMMANDS = ["data", "synth", "train", "export", "eval", "simulate", "bench",
            "deploy", "flash", "firmware", "monitor", "record", "enroll"]

EPILOG = """\
typical session:
  hark data fetch speech-commands        # or use any Speech Commands-layout folder
  hark train --data DATA --out runs/kws  # trains, writes model.keras, metrics and plots
  hark export runs/kws --out model.hark  # full-int8 TFLite + firmware model blob
  hark eval --model model.hark --data DATA --engine firmware
  hark simulate clip.wav --model model.hark
  hark deploy --board esp32-inmp441 --port /dev/ttyUSB0

Run `hark COMMAND --help` for the options of each command.
"""


class HarkError(Exception):
    """An error the user can fix; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hark", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hark {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"hark.commands.{name}")
            module.register(sub)
        except ModuleNotFoundError as exc:
            if exc.name.startswith("hark"):
                raise
            _register_unavailable(sub, name, exc.name)
    for command in sub.choices.values():
        if not command.get_default("unavailable"):
            command.add_argument("--verbose", action="store_true",
                                 help="show the libraries' own log messages (TensorFlow's start-up)")
    return parser


def _register_unavailable(sub, name: str, missing: str) -> None:
    """A command whose libraries are not installed (e.g. after `make demo`) still shows up
    and says how to get them, instead of breaking every other command."""
    def explain(args):
        raise HarkError(f"`hark {name}` needs the Python package {missing!r}, which this "
                        "environment lacks (`make demo` installs only the demo's needs); "
                        "run `make venv-dev` or `pip install -r requirements/dev.txt`")

    p = sub.add_parser(name, help=f"(needs {missing}: run `make venv-dev`)", add_help=False)
    p.set_defaults(func=explain, unavailable=True)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """A warning is news for the user, not for a developer: one line, no source code."""
    print(f"warning: {message}", file=sys.stderr if file is None else file, flush=True)


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "unavailable", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not getattr(args, "verbose", False):
        from hark.quiet import silence_tensorflow
        silence_tensorflow()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return args.func(args) or 0
    except HarkError as exc:
        print(f"hark {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
