"""Run the device firmware in 32-bit MicroPython on an emulated Cortex-M4F (QEMU mps2-an386).

The pyboard's core, ISA and FPU: modules are armv7emsp .mpy files on a FAT disk, loaded into the
32-bit GC heap as `hark deploy` puts them on a board (bytecode, qstrs and viper machine code all
in the heap), and QEMU's -icount gives exact instruction counts. The MicroPython build, its
mpy-cross and the FAT builder come from ../shared/tools/qemu-m4 (its README says how they were
built); $HARK_QEMU_DIR overrides the folder. QEMU models instructions, not cycles (no caches,
flash wait states or bus timing), and has no I2S: audio comes from a WAV file, and the profile's
I2S buffer (audio.i2s.ibuf) is allocated in its place (firmware/options.py make_source).
"""
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hark import FIRMWARE_DIR, REPO
from hark.cli import HarkError
from hark.deploy import compile_module, firmware_sources
from hark.unixport import micropython_binary, parse_output

QEMU = "qemu-system-arm"
ARCH = "armv7emsp"
DISK_ADDR = 0x21000000
DISK_MAX = 16 * 1024 * 1024
ELF = "hark-an386.elf"
HEAP_STEP = 64          # bisection resolution of min_heap, bytes


def qemu_dir() -> Path:
    return Path(os.environ.get("HARK_QEMU_DIR") or REPO.parent / "shared" / "tools" / "qemu-m4")


def missing() -> str:
    """Why QEMU runs are impossible here ('' when they are possible)."""
    d = qemu_dir()
    if not shutil.which(QEMU):
        return f"{QEMU} is not installed (Debian: apt-get install qemu-system-arm; `make test` does it)"
    for need in (d / "firmware" / ELF, d / "bin" / "mpy-cross", d / "mkfat.py"):
        if not need.is_file():
            return f"{need} not found (the MicroPython build for QEMU; set $HARK_QEMU_DIR)"
    return ""


@dataclass
class QemuRun:
    exit: int = None
    detections: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    out: str = ""

    @property
    def ok(self):
        return self.exit == 0


def _wav_header(n_samples: int) -> bytes:
    data = 2 * n_samples
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", data))


def board_config(board: dict) -> dict:
    """The profile as QEMU runs it: audio from a file but the I2S section kept (its buffer is
    allocated as on the board), no GPIO actions."""
    prof = json.loads(json.dumps(board))
    prof["audio"] = dict(prof["audio"], source="wav")
    prof["actions"] = {"led": None, "pins": {}}
    return prof


class Image:
    """A FAT disk with main.py, the firmware as armv7emsp .mpy, model.hark, config.json, the clip
    and an empty WAV (start-up alone, for instruction counts per hop)."""

    def __init__(self, model, board: dict, wav, firmware_dir: Path = FIRMWARE_DIR, files=None,
                 elf: Path = None, frozen=False):
        """files: more {name on the disk: host path} (an enrollment WAV, enrolled.bin).
        elf: another MicroPython build for mps2-an386 (`hark firmware build --qemu`); frozen: its
        image holds the firmware modules, so only main.py of them goes on the disk."""
        reason = missing()
        if reason:
            raise HarkError(f"cannot run QEMU: {reason}")
        self.elf = Path(elf) if elf else qemu_dir() / "firmware" / ELF
        if not self.elf.is_file():
            raise HarkError(f"{self.elf} not found; build it with `hark firmware build --board pyboard --qemu`")
        self._tmp = tempfile.TemporaryDirectory(prefix="hark-qemu-")
        extra = files
        work = Path(self._tmp.name)
        files = work / "files"
        files.mkdir()
        mpy_cross = str(qemu_dir() / "bin" / "mpy-cross")   # the .mpy version of the ELF
        for src in firmware_sources(firmware_dir):
            if src.name == "main.py":
                shutil.copyfile(src, files / "main.py")
                continue
            if frozen:
                continue
            compile_module(src, ARCH, files / (src.stem + ".mpy"), [mpy_cross])
        (files / "config.json").write_text(json.dumps(board_config(board)))
        (files / "empty.wav").write_bytes(_wav_header(0))
        shutil.copyfile(model, files / "model.hark")
        shutil.copyfile(wav, files / "clip.wav")
        for name, path in (extra or {}).items():
            shutil.copyfile(path, files / name)
        total = sum(f.stat().st_size for f in files.iterdir())
        self.size = min(DISK_MAX, (total * 5 // 4 + 256 * 1024 + 65535) & ~65535)
        if total + 128 * 1024 > self.size:
            raise HarkError(f"{wav}: too long for QEMU's 16 MiB disk; use a shorter clip")
        self.path = work / "disk.img"
        pairs = [str(x) for f in sorted(files.iterdir()) for x in (f, f.name)]
        res = subprocess.run([micropython_binary(), "-X", f"heapsize={2 * self.size + (8 << 20)}",
                              str(qemu_dir() / "mkfat.py"), str(self.path), str(self.size)] + pairs,
                             capture_output=True, text=True)
        if res.returncode or not self.path.is_file():
            raise HarkError(f"building the QEMU disk image failed:\n{res.stdout}{res.stderr}")

    def close(self):
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, heap: int, wav="clip.wav", pad_ms=1000, stats=False, timeout=600,
            more=()) -> QemuRun:
        """main.py on the disk with `heap` bytes of GC heap; parses detections and stats.
        more: further main.py arguments (e.g. --enroll WORD)."""
        args = ["hark", "run", f"heap={heap}", f"disk={self.size}", "main.py", "--model", "model.hark",
                "--board", "config.json", "--wav", wav, "--pad-ms", str(pad_ms)] + ["--stats"] * stats
        args += list(more)
        cmd = [QEMU, "-machine", "mps2-an386", "-display", "none", "-monitor", "none",
               "-serial", "stdio", "-icount", "shift=0,align=off,sleep=off",
               "-semihosting-config", "enable=on,target=native," + ",".join("arg=" + a for a in args),
               "-device", f"loader,file={self.path},addr={DISK_ADDR:#x},force-raw=on",
               "-kernel", str(self.elf)]
        try:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarkError(f"QEMU did not finish within {timeout} s") from None
        out = res.stdout.decode(errors="replace").replace("\r", "")
        # `hark-qemu boot k=v ...` / `hark-qemu done k=v ...` parse like the firmware's stats lines
        run = parse_output(re.sub(r"(?m)^hark-qemu ", "stats ", out))
        r = QemuRun(detections=[str(d) for d in run.detections], stats=run.stats, out=out)
        r.exit = r.stats.get("done.exit")
        return r


def min_heap(image: Image, ref: QemuRun, lo=16 * 1024, hi=256 * 1024) -> int:
    """Smallest --heap (HEAP_STEP bytes) that starts and gives ref's detections on the clip.
    The bisection runs 0.2 s of silence (the heap peaks at start-up: the loop allocates nothing),
    then the clip confirms, a step higher if fragmentation wants it."""
    def starts(heap):
        return image.run(heap, wav="empty.wav", pad_ms=200).ok
    if not starts(hi):
        raise HarkError(f"the firmware does not run in QEMU even with {hi} bytes of heap")
    while hi - lo > HEAP_STEP:
        mid = (lo + hi) // 2 // 16 * 16
        if starts(mid):
            hi = mid
        else:
            lo = mid
    for heap in range(hi, hi + 16 * HEAP_STEP, HEAP_STEP):
        r = image.run(heap)
        if r.ok and r.detections == ref.detections:
            return heap
    raise HarkError(f"the firmware starts in QEMU with {hi} bytes of heap but fails on the clip "
                    f"up to {heap}")


def measure(model, board: dict, wav, firmware_dir: Path = FIRMWARE_DIR, elf: Path = None,
            frozen=False) -> dict:
    """The 32-bit figures of one model on one board profile: detections, smallest heap, live heap,
    instructions per 20 ms hop (whole loop, and per stage from --stats) and start-up.
    elf, frozen: as Image's (a frozen firmware build)."""
    with Image(model, board, wav, firmware_dir, elf=elf, frozen=frozen) as image:
        big = image.run(256 * 1024, stats=True)
        if not big.ok:
            tail = "\n".join(big.out.strip().splitlines()[-6:])
            raise HarkError(f"the firmware failed in QEMU:\n{tail}")
        s = big.stats
        plain = image.run(256 * 1024)
        start = image.run(256 * 1024, wav="empty.wav", pad_ms=0)
        hops = s["frames"]
        per_hop = (plain.stats["done.main_insns"] - start.stats["done.main_insns"]) / hops
        smallest = min_heap(image, big)
        edge = image.run(smallest)
    # --stats times are virtual µs: 1 µs = 1,000 instructions under -icount shift=0
    stages = {k.split(".", 1)[1]: v * 1000 for k, v in s.items() if k.startswith("us_per_hop.")}
    return {"detections": big.detections, "heap_live": s["heap_live"], "heap_peak": s["heap_peak"],
            "min_heap": smallest, "min_heap_free_at_start": edge.stats["boot.heap_free"],
            # the budget is free heap for hark (a board's REPL figure), as hark deploy reads it
            "fits_budget": edge.stats["boot.heap_free"] <= board["ram_budget_bytes"],
            "budget": board["ram_budget_bytes"],
            "ibuf": ((board.get("audio") or {}).get("i2s") or {}).get("ibuf", 0),
            "insns_per_hop": round(per_hop), "insns_startup": start.stats["done.main_insns"],
            "insns_per_hop_stage": {k: stages[k] for k in ("read", "frontend", "window", "infer", "detect",
                                                           "actions") if k in stages},
            "max_block_insns": s.get("max_block_us", 0) * 1000, "macs_per_hop": s.get("macs_per_hop")}
