"""Build a MicroPython image with hark's firmware modules frozen in, for users who can build firmware.

Stock MicroPython plus `hark deploy` stays the default path. A frozen image runs the modules from
flash: their bytecode, viper machine code and names (qstrs) take no GC heap, where `hark deploy`'s
.mpy files are loaded into it. main.py, config.json and the model stay on the board's filesystem
(`hark deploy` still puts them there). The port's own make builds the image, with FROZEN_MANIFEST
pointing at a manifest.py written here: the port's stock manifest plus the modules `hark deploy`
sends (firmware/*.py but main.py), compiled with the same -O3 as theirs.

Targets: a board profile's MCU picks the MicroPython port and board. `qemu` is the pyboard's
Cortex-M4F core on QEMU's mps2-an386, built from the MicroPython source bundled in
../shared/tools/qemu-m4 with its hark-qemu.patch: the one target whose whole build is checked
here. The other ports need a MicroPython checkout with the port's submodules and their toolchain;
when something is missing the manifest is still written and the error says what to install and
the exact command to run.
"""
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hark import FIRMWARE_DIR, REPO
from hark.cli import HarkError
from hark.deploy import MPY_OPTIMISE, module_sources
from hark.qemu import qemu_dir

BUILD_ROOT = REPO / "build" / "firmware"
ARM_GCC = "Debian/Ubuntu: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi (`make firmware-deps`)"
QEMU_SOURCE = "micropython-1c3c201-src.tar.xz"
MPY_OPT = int(MPY_OPTIMISE[2:])     # hark deploy's mpy-cross -O level: no line-number tables
IDF = ("idf.py", "ESP-IDF (the version ports/esp32/README.md names; source its export.sh so "
       "idf.py is on PATH)")


@dataclass(frozen=True)
class Target:
    port: str           # ports/<port> of the MicroPython tree
    board: str          # its BOARD=
    image: str          # the file in the build folder to hand out
    stock: str          # the manifest stock firmware freezes (kept in the image)
    tools: tuple        # (executable, how to install it)
    submodules: tuple   # lib/ folders the port's build needs populated
    after: str          # what to do with the image


FLASH_THEN_DEPLOY = "hark flash --board {profile} --firmware {image}, then hark deploy --board {profile}{frozen}"
TARGETS = {
    "STM32F405": Target("stm32", "PYBV11", "firmware.dfu", "$(PORT_DIR)/boards/manifest.py",
                        (("arm-none-eabi-gcc", ARM_GCC),), ("lib/stm32lib", "lib/micropython-lib"),
                        FLASH_THEN_DEPLOY),
    "RP2040": Target("rp2", "RPI_PICO", "firmware.uf2", "$(PORT_DIR)/boards/manifest.py",
                     (("arm-none-eabi-gcc", ARM_GCC), ("cmake", "apt-get install cmake")),
                     ("lib/pico-sdk", "lib/tinyusb", "lib/micropython-lib"),
                     FLASH_THEN_DEPLOY),
    "ESP32": Target("esp32", "ESP32_GENERIC", "firmware.bin", "$(PORT_DIR)/boards/manifest.py",
                    (IDF,), ("lib/berkeley-db-1.xx", "lib/micropython-lib"), FLASH_THEN_DEPLOY),
    "ESP32-S3": Target("esp32", "ESP32_GENERIC_S3", "firmware.bin", "$(PORT_DIR)/boards/manifest.py",
                       (IDF,), ("lib/berkeley-db-1.xx", "lib/micropython-lib"), FLASH_THEN_DEPLOY),
}
# The pyboard's core in QEMU (the port's board from hark-qemu.patch; its stock manifest freezes
# only the boot script that mounts the disk)
QEMU = Target("qemu", "HARK_AN386", "firmware.elf", "$(BOARD_DIR)/manifest.py",
              (("arm-none-eabi-gcc", ARM_GCC),), (),
              "measure it: {qemu_dir}/run_hark_qemu.sh --elf {image}{frozen} --wav CLIP --min-heap")
QEMU_MCUS = ("STM32F405",)      # Cortex-M4F boards QEMU's mps2-an386 stands in for


def target_for(board: dict, qemu=False) -> Target:
    mcu = board["mcu"]
    if mcu == "unix":
        raise HarkError("the unix port needs no firmware image: it imports firmware/ as it is "
                        "(`hark simulate`); pick a board profile")
    if qemu:
        if mcu not in QEMU_MCUS:
            raise HarkError(f"--qemu stands in for a Cortex-M4F board ({', '.join(QEMU_MCUS)}); "
                            f"profile '{board['name']}' is a {mcu}")
        return QEMU
    if mcu not in TARGETS:
        raise HarkError(f"no MicroPython port known for MCU {mcu!r} (profile '{board['name']}'); "
                        f"known: {', '.join(TARGETS)}")
    return TARGETS[mcu]


def frozen_modules(firmware_dir: Path = FIRMWARE_DIR) -> list:
    """The module files `hark deploy` sends as .mpy (deploy.module_sources)."""
    return [p.name for p in module_sources(firmware_dir)]


def manifest_text(target: Target, frozen=True, firmware_dir: Path = FIRMWARE_DIR, weights: Path = None) -> str:
    """weights: a model.py (weights_module) to freeze as well."""
    lines = ["# Written by `hark firmware build`: the port's stock manifest"
             + (" plus hark's firmware modules (rebuild after changing firmware/)." if frozen else "."),
             f'include("{target.stock}")']
    if frozen:
        names = ",\n    ".join(repr(n) for n in frozen_modules(firmware_dir))
        lines.append(f"freeze(\n    {str(Path(firmware_dir).resolve())!r},\n    ({names},),\n"
                     f"    opt={MPY_OPT},\n)")
    if weights:
        lines.append(f"freeze({str(weights.parent.resolve())!r}, {weights.name!r}, opt={MPY_OPT})")
    return "\n".join(lines) + "\n"


def weights_module(model: Path, out: Path, firmware_dir: Path = FIRMWARE_DIR) -> Path:
    """out/model.py: firmware/frozen/model.py plus the model's CRC field and weight bytes. Frozen,
    the bytes stay in flash and start-up uses them in place of the file's copy."""
    from hark.training.blob import BlobError, read_blob
    from hark.training.blobmeta import header_crc
    try:
        _, arrays = read_blob(model)
    except BlobError as exc:
        raise HarkError(str(exc)) from None
    if "w" not in arrays:
        raise HarkError(f"{model} has no weight array 'w'; re-export it with `hark export`")
    crc = header_crc(model).to_bytes(4, "little")
    path = out / "model.py"
    path.write_text((Path(firmware_dir) / "frozen" / "model.py").read_text()
                    + f"\n\n# {Path(model).name}\nCRC = {crc!r}\nW = {arrays['w'].tobytes()!r}\n")
    return path


def bundled_source(root: Path = BUILD_ROOT) -> Path:
    """The MicroPython source of ../shared/tools/qemu-m4 extracted and patched (once) under build/."""
    archive = qemu_dir() / QEMU_SOURCE
    patch = qemu_dir() / "hark-qemu.patch"
    src = root / QEMU_SOURCE.replace("-src.tar.xz", "")
    stamp = src / ".hark-patched"
    if stamp.is_file():
        return src
    for need in (archive, patch):
        if not need.is_file():
            raise HarkError(f"{need} not found (the MicroPython source for QEMU; set $HARK_QEMU_DIR "
                            "or pass --micropython)")
    if not shutil.which("patch"):
        raise HarkError("`patch` is not installed (Debian: apt-get install patch)")
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for m in members:   # drop the archive's top folder
            m.name = m.name.split("/", 1)[1] if "/" in m.name else ""
        tar.extractall(src, [m for m in members if m.name], filter="tar")
    with open(patch, "rb") as f:
        res = subprocess.run(["patch", "-p1", "-s"], cwd=src, stdin=f, capture_output=True, text=True)
    if res.returncode:
        raise HarkError(f"hark-qemu.patch does not apply to {archive.name}:\n{res.stdout}{res.stderr}")
    stamp.write_text("extracted and patched by hark firmware build\n")
    return src


def missing(target: Target, source: Path, mp_board: str = None) -> list:
    """What the build lacks here, each with how to get it ([] when it can build)."""
    out = []
    port = source / "ports" / target.port
    if not port.is_dir():
        return [f"{source} has no ports/{target.port}: pass --micropython with a MicroPython "
                f"checkout (git clone of micropython/micropython)"]
    board = mp_board or target.board
    if not (port / "boards" / board).is_dir():
        fix = (f"apply {qemu_dir() / 'hark-qemu.patch'} (patch -p1), or leave out --micropython"
               if target is QEMU else "pick one of its boards with --mp-board")
        out.append(f"board {board} (not in {port / 'boards'}: {fix})")
    for exe, how in target.tools:
        if not shutil.which(exe):
            out.append(f"{exe} ({how})")
    for sub in target.submodules:
        d = source / sub
        if not d.is_dir() or not any(d.iterdir()):
            out.append(f"{sub} (in {source}: make -C ports/{target.port} BOARD={board} submodules)")
    return out


def make_commands(target: Target, source: Path, manifest: Path, build: str, jobs: int,
                  mp_board: str = None) -> list:
    """mpy-cross (which freezing needs and the ports do not build), then the port's image."""
    port = ["make", "-C", str(source / "ports" / target.port), f"BOARD={mp_board or target.board}",
            f"BUILD={build}", f"FROZEN_MANIFEST={manifest.resolve()}", f"-j{jobs}"]
    if target is QEMU:
        # its manifests need no micropython-lib, but the build insists the folder exists
        port.append(f"MPY_LIB_DIR={source / 'empty-mpylib'}")
    return [["make", "-C", str(source / "mpy-cross"), f"-j{jobs}"], port]


def shell(commands: list) -> str:
    return " && ".join(" ".join(c) for c in commands)


def image_size(path: Path) -> dict:
    """File size, and for an ELF the flash it takes (text + data, arm-none-eabi-size)."""
    sizes = {"file_bytes": path.stat().st_size}
    if path.suffix == ".elf" and shutil.which("arm-none-eabi-size"):
        out = subprocess.run(["arm-none-eabi-size", str(path)], capture_output=True, text=True).stdout
        text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
        sizes.update(text=text, data=data, bss=bss, flash_bytes=text + data)
    return sizes


@dataclass
class Built:
    manifest: Path
    commands: list
    image: Path = None
    sizes: dict = None
    next_step: str = ""


def build(board: dict, frozen=True, qemu=False, source: Path = None, out: Path = None,
          firmware_dir: Path = FIRMWARE_DIR, jobs: int = 1, mp_board: str = None,
          manifest_only=False, model: Path = None, say=print) -> Built:
    """Write the manifest into `out`, then build and copy the image there (or, with
    manifest_only or when the port cannot build here, stop after saying the command).
    model: freeze its weights too (weights_module)."""
    target = target_for(board, qemu)
    if model and not frozen:
        raise HarkError("--model freezes the model's weights beside the firmware modules: add --frozen")
    kind = ("frozen" if frozen else "stock") + ("-weights" if model else "")
    name = f"{'qemu' if qemu else board['name']}-{kind}"
    out = Path(out or BUILD_ROOT / name)
    out.mkdir(parents=True, exist_ok=True)
    weights = weights_module(Path(model), out, firmware_dir) if model else None
    manifest = out / "manifest.py"
    manifest.write_text(manifest_text(target, frozen, firmware_dir, weights))
    say(f"wrote {manifest}" + (f" ({len(frozen_modules(firmware_dir))} firmware modules frozen"
                               + (f", and the weights of {model}" if model else "") + ")"
                               if frozen else " (stock: no hark modules)"))
    if source is None and os.environ.get("HARK_MICROPYTHON"):
        source = Path(os.environ["HARK_MICROPYTHON"])
    build_dir = f"build-{mp_board or target.board}-hark-{kind}"
    shown = source or Path("MICROPYTHON")
    result = Built(manifest, make_commands(target, shown, manifest, build_dir, jobs, mp_board))
    if manifest_only:
        say("build it with:\n  " + shell(result.commands))
        return result
    if source is None:
        if target is not QEMU:
            raise HarkError(f"building the {target.port} image needs a MicroPython source tree: pass "
                            f"--micropython DIR (a checkout of micropython/micropython) or set "
                            f"$HARK_MICROPYTHON; the manifest is written, so with one:\n  "
                            + shell(result.commands))
        source = bundled_source()
    source = Path(source).resolve()
    result.commands = make_commands(target, source, manifest, build_dir, jobs, mp_board)
    lacks = missing(target, source, mp_board)
    if lacks:
        raise HarkError(f"cannot build the {target.port} image here; missing:\n  " + "\n  ".join(lacks)
                        + f"\nthe manifest is written ({manifest}); once they are there, build with:\n  "
                        + shell(result.commands))
    if target is QEMU:
        placeholder = source / "empty-mpylib"
        placeholder.mkdir(exist_ok=True)
        (placeholder / "README.md").write_text("placeholder: the hark manifests need no micropython-lib\n")
    log = out / "build.log"
    say(f"building: {shell(result.commands)}\n  log: {log}")
    with open(log, "w") as f:
        for cmd in result.commands:
            res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
            if res.returncode:
                break
    if res.returncode:
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
        raise HarkError(f"the {target.port} build failed (exit {res.returncode}); last lines of {log}:\n{tail}")
    built = source / "ports" / target.port / build_dir / target.image
    result.image = out / f"hark-{name}{built.suffix}"
    shutil.copyfile(built, result.image)
    result.sizes = image_size(result.image)
    result.next_step = target.after.format(profile=board["name"], image=result.image, qemu_dir=qemu_dir(),
                                           frozen=" --frozen" if frozen else "")
    return result
