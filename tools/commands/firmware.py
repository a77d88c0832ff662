"""`hark firmware build`: a MicroPython image with hark's firmware modules frozen into flash.

Optional, for users who can build MicroPython: stock firmware plus `hark deploy` stays the
default path. Frozen modules run from flash, so their code and names take no heap: on the
pyboard's core (QEMU) the default model's live heap drops by about 25 KB (docs/firmware-build.md).
main.py, config.json and the model stay on the board's filesystem.
"""
import argparse
import os
from pathlib import Path

from hark import FIRMWARE_DIR, boards
from hark.cli import HarkError

EPILOG = """\
targets (the profile's MCU picks the MicroPython port and board):
  pyboard (STM32F405)  ports/stm32 BOARD=PYBV11 -> .dfu   arm-none-eabi-gcc, lib/stm32lib
  rp2040               ports/rp2 BOARD=RPI_PICO -> .uf2   arm-none-eabi-gcc, cmake, lib/pico-sdk
  esp32-inmp441        ports/esp32 ESP32_GENERIC -> .bin  ESP-IDF (idf.py on PATH)
  esp32s3              ports/esp32 ESP32_GENERIC_S3 -> .bin
  --qemu (pyboard)     the pyboard's Cortex-M4F in QEMU mps2-an386 -> .elf, from the MicroPython
                       source bundled in ../shared/tools/qemu-m4 (no checkout needed)
A port that cannot build here (no checkout, toolchain or submodule) still gets its manifest.py,
and the error lists what to install and the exact make command.

examples:
  make firmware-deps                                     # arm toolchain (Debian)
  hark firmware build --board pyboard --qemu --frozen    # build/firmware/qemu-frozen/*.elf
  hark firmware build --board pyboard --qemu --frozen --model models/default.hark   # weights too
  ../shared/tools/qemu-m4/run_hark_qemu.sh --elf build/firmware/qemu-frozen/hark-qemu-frozen.elf \\
      --frozen --wav samples/yes__0ab3b47d_nohash_0.wav --min-heap
  hark firmware build --board pyboard --frozen --micropython ~/micropython
  hark flash --board pyboard --firmware build/firmware/pyboard-frozen/hark-pyboard-frozen.dfu
  hark deploy --board pyboard --frozen   # then main.py, config.json and the model only
"""

SHORT_EPILOG = """\
examples (`hark firmware build --help` lists the targets and more):
  hark firmware build --board pyboard --qemu --frozen    # build/firmware/qemu-frozen/*.elf
  hark firmware build --board pyboard --frozen --micropython ~/micropython
"""


def register(sub):
    p = sub.add_parser("firmware", help="build a MicroPython image with the firmware frozen in (optional)",
                       description=__doc__, epilog=SHORT_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    b = actions.add_parser("build", help="write the freeze manifest and build the image",
                           description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--board", required=True,
                   help=f"board profile ({', '.join(boards.available())}) or a profile .json")
    b.add_argument("--frozen", action="store_true",
                   help="freeze firmware/*.py except main.py (the modules `hark deploy` sends as .mpy); "
                        "without it the image is the port's stock firmware, for comparison")
    b.add_argument("--model", type=Path,
                   help="with --frozen: freeze this model's weights (its array w) as well, so they stay "
                        "in flash instead of the heap; the board must then run this same model (the "
                        "firmware checks the blob's CRC at start-up)")
    b.add_argument("--qemu", action="store_true",
                   help="build for QEMU's mps2-an386 (the pyboard's core) to measure heap and "
                        "instructions (tools/qemu.py, run_hark_qemu.sh --elf)")
    b.add_argument("--micropython", type=Path,
                   help="MicroPython source tree with the port's submodules (default $HARK_MICROPYTHON; "
                        "--qemu: the source bundled in ../shared/tools/qemu-m4, patched under build/)")
    b.add_argument("--mp-board", help="the port's BOARD= (default per MCU: PYBV11, RPI_PICO, ESP32_GENERIC...)")
    b.add_argument("--out", type=Path, help="where manifest.py, build.log and the image go "
                                            "(default build/firmware/BOARD-frozen/)")
    b.add_argument("--firmware-dir", type=Path, default=FIRMWARE_DIR, help="firmware sources (default firmware/)")
    b.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="make -j (default: all cores)")
    b.add_argument("--manifest-only", action="store_true",
                   help="write manifest.py and print the make command; build nothing")
    b.set_defaults(func=run_build)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_build(args):
    from hark.firmware import build

    if args.jobs < 1:
        raise HarkError(f"--jobs must be at least 1, not {args.jobs}")
    board = boards.load(args.board)
    built = build(board, frozen=args.frozen, qemu=args.qemu, source=args.micropython, out=args.out,
                  firmware_dir=args.firmware_dir, jobs=args.jobs, mp_board=args.mp_board,
                  manifest_only=args.manifest_only, model=args.model)
    if built.image:
        sizes = built.sizes
        flash = f", {sizes['flash_bytes']:,} B of flash (text {sizes['text']:,} + data {sizes['data']:,})" \
            if "flash_bytes" in sizes else ""
        print(f"image: {built.image} ({sizes['file_bytes']:,} B file{flash})")
        print(f"next: {built.next_step}")
    return 0
