"""`hark deploy`: compile the firmware for a board and install it with the model and config.json."""
import argparse
from pathlib import Path

from hark import FIRMWARE_DIR, REPO, boards
from hark.cli import HarkError
from hark.deploy import (BUILD_DIR, DEFAULT_MODEL, build, check_fits, deploy, format_package_json,
                         mip_package)

DESCRIPTION = """\
Precompile firmware/*.py with mpy-cross for the board's architecture (into build/BOARD/), refuse
a model that is corrupt, does not match the profile or does not fit the board's budgets, then
copy the changed files over the serial REPL to temporary names and rename them into place, and
soft-reset the board.
"""

EXAMPLES = """\
examples:
  hark deploy --board esp32-inmp441 --port /dev/ttyUSB0
  hark deploy --board esp32-inmp441 --model models/esp32.hark # width 80: the most an ESP32 holds
  hark deploy --board rp2040 --model models/assistant.hark   # another model, same firmware
  hark deploy --board esp32s3 --model models/wide.hark       # width 96: more RAM, more commands heard
  hark deploy --board pyboard --build-only                   # budget report, no board needed
  hark deploy --board my-board.json                          # your own profile (docs/deploy.md)
"""


def register(sub):
    p = sub.add_parser(
        "deploy", help="compile the firmware for a board and copy it with the model to the board",
        description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board",
                   help=f"board profile name ({', '.join(boards.available())}) or a profile .json")
    p.add_argument("--port", help="serial port (default: the only MicroPython-like USB device)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model blob (default models/default.hark)")
    p.add_argument("--firmware-dir", type=Path, default=FIRMWARE_DIR, help="firmware sources (default firmware/)")
    p.add_argument("--build-dir", type=Path, default=BUILD_DIR, help="where build/BOARD/ goes")
    p.add_argument("--build-only", action="store_true",
                   help="only compile into build/BOARD/ and check the model and the budgets (no board "
                        "needed); exits 1 if the model would be refused")
    p.add_argument("--force", action="store_true",
                   help="deploy even if the budget check says the model does not fit")
    p.add_argument("--frozen", action="store_true",
                   help="the board runs an image with the firmware frozen in (`hark firmware build "
                        "--frozen`): copy main.py, config.json and the model only, and delete the "
                        "modules' .mpy/.py copies, which would be imported instead of the frozen ones")
    p.add_argument("--write-package-json", action="store_true",
                   help="regenerate package.json (mip) from firmware/*.py and exit")
    p.set_defaults(func=run)


def run(args):
    if args.write_package_json:
        path = REPO / "package.json"
        path.write_text(format_package_json(mip_package(args.firmware_dir)))
        print(f"wrote {path}")
        return 0
    if not args.board:
        raise HarkError(f"--board is required; boards: {', '.join(boards.available())}")
    board = boards.load(args.board)
    if args.frozen and board["mcu"] == "unix":
        raise HarkError("--frozen is for a board flashed with `hark firmware build --frozen`; the unix "
                        "port has no such image and needs the modules (drop --frozen)")
    if args.build_only:
        built = build(board, args.firmware_dir, args.build_dir, args.frozen)
        for path in built:
            print(f"{path} {path.stat().st_size} bytes")
        print(check_fits(board, args.model, built, args.force))
        return 0
    deploy(board, args.port, args.model, args.firmware_dir, args.build_dir, args.force, frozen=args.frozen)
    return 0
