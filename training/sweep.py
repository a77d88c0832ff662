"""Many detector settings from one firmware pass: the real firmware pipeline (MicroPython unix
port: device front end, int8 engine) runs a WAV once and writes its rows of model scores; the
rows then feed one firmware Detector (firmware/detector.py) per setting, in the unix port too.
Every point of a DET curve comes from the detector the device runs, at the cost of a single
pass of the model (the rows can be kept and fed again to other settings)."""
import json
import os
import subprocess
import tempfile
from pathlib import Path

from . import blob as blobfile

# Runs in the unix port: the firmware Runtime with its detector swapped for a tap that writes
# each row of int8 model scores to a file (the rows a device's detector would get).
SCORES_DRIVER = """
import json, sys
import runtime
import options

class Tap:
    def __init__(self, f):
        self.f = f

    def update(self, out, t):
        self.f.write(out)
        return -1

a = json.loads(open(sys.argv[1]).read())
board = options.load_board(a["board"])
rt = runtime.Runtime(a["model"], board, printer=False)
f = open(a["rows"], "wb")
rt.detector = Tap(f)
src = options.make_source(board, a["wav"], False, a["pad_ms"])
rt.run(src)
src.close()
f.close()
print(rt.hop_ms * rt.infer_every, rt.engine.output_scale, rt.engine.output_zero_point)
"""

# Runs in the unix port: one firmware Detector per config (the board's grammar), fed the
# score rows of a file at the times the Runtime feeds them; prints `setting time_ms pct
# label_index` per detection.
DETECTORS_DRIVER = """
import json, sys
import runtime
import options
from detector import Detector

a = json.loads(open(sys.argv[1]).read())
board = options.load_board(a["board"])
rt = runtime.Runtime(a["model"], board, printer=False)
period = rt.hop_ms * rt.infer_every
dets = [Detector(rt.labels, cfg, rt.engine.output_scale, rt.engine.output_zero_point,
                 period, board.get("grammar")) for cfg in a["configs"]]
row = bytearray(len(rt.engine.output))
f = open(a["rows"], "rb")
t = 0
while f.readinto(row) == len(row):
    t = (t + period) & 0x1FFFFFFF
    k = 0
    for d in dets:
        label = d.update(row, t)
        if label >= 0:
            print("%d %d %d %d" % (k, t, d.last_pct, label))
        k += 1
f.close()
"""


def settings_grid(windows, thresholds) -> list:
    return [(int(w), float(t)) for w in windows for t in thresholds]


def _unix_port(driver, args, timeout=None) -> str:
    """Run a driver script in the MicroPython unix port with the firmware on its path; its
    stdout."""
    from hark.cli import HarkError
    from hark.unixport import compile_firmware, micropython_binary

    code_dir = compile_firmware()
    with tempfile.TemporaryDirectory(prefix="hark-sweep-") as tmp:
        args_path, script = Path(tmp) / "args.json", Path(tmp) / "driver.py"
        args_path.write_text(json.dumps(args))
        script.write_text(driver)
        res = subprocess.run([micropython_binary(), "-X", "heapsize=2000000", str(script),
                              str(args_path)], capture_output=True, text=True, timeout=timeout,
                             env=dict(os.environ, MICROPYPATH=str(code_dir)))
    if res.returncode != 0:
        raise HarkError(f"the firmware failed in the unix port: {res.stderr.strip()[-800:]}")
    return res.stdout


def _board_file(board, meta, folder) -> str:
    """A host board profile as a file; its grammar applies, else the blob's, as on a device."""
    path = Path(folder) / "board.json"
    path.write_text(json.dumps(dict(board, grammar=board.get("grammar") or meta.get("grammar"))))
    return str(path)


def firmware_scores(model, wav, rows_path, board, pad_ms=1000, timeout=None) -> dict:
    """Run a WAV file once through the firmware (front end, int8 engine) and write its rows of
    int8 model scores to rows_path; returns the ms between rows (period_ms) and the output's
    scale and zero_point."""
    meta, _ = blobfile.read_blob(model)
    with tempfile.TemporaryDirectory(prefix="hark-board-") as tmp:
        out = _unix_port(SCORES_DRIVER, {
            "model": str(Path(model).resolve()), "board": _board_file(board, meta, tmp),
            "wav": str(Path(wav).resolve()), "pad_ms": pad_ms,
            "rows": str(Path(rows_path).resolve())}, timeout)
    period, scale, zero_point = out.split()[-3:]
    return {"period_ms": int(period), "scale": float(scale), "zero_point": int(zero_point)}


def detector_config(meta, setting, label=None) -> dict:
    """The blob's detector settings with one sweep setting applied: (average_window_ms,
    threshold[, global threshold]); the threshold replaces `label`'s own threshold (a wake
    word) or, without a label, the global one (every per-label override dropped). A third
    value, with a label, replaces the global threshold (the other labels')."""
    window, thr, *rest = setting
    cfg = dict(meta.get("detector") or {}, average_window_ms=int(window))
    if label:
        cfg["thresholds"] = dict(cfg.get("thresholds") or {}, **{label: float(thr)})
        if rest:
            cfg["threshold"] = float(rest[0])
    else:
        cfg["threshold"] = float(thr)
        cfg["thresholds"] = {}
    return cfg


def detector_sweep(model, rows_path, configs, board, timeout=None) -> list:
    """Detections [[(time_s, label), ...] per detector config] of firmware Detectors fed the
    score rows firmware_scores wrote, in the board's grammar (else the blob's)."""
    meta, _ = blobfile.read_blob(model)
    with tempfile.TemporaryDirectory(prefix="hark-board-") as tmp:
        out = _unix_port(DETECTORS_DRIVER, {
            "model": str(Path(model).resolve()), "board": _board_file(board, meta, tmp),
            "rows": str(Path(rows_path).resolve()),
            "configs": configs},
            timeout)
    found = [[] for _ in configs]
    for line in out.split("\n"):
        parts = line.split()
        if len(parts) == 4:
            found[int(parts[0])].append((int(parts[1]) / 1000, meta["labels"][int(parts[3])]))
    return found


def firmware_sweep(model, wav, settings, board, label=None, pad_ms=1000, timeout=None) -> list:
    """Detections [[(time_s, label), ...] per setting] of the firmware on a WAV file: one pass
    of the firmware, its score rows fed to one firmware Detector per setting (detector_config:
    (average_window_ms, threshold[, global threshold])). board: a host board profile (its
    grammar applies, else the blob's, as on a device)."""
    meta, _ = blobfile.read_blob(model)
    configs = [detector_config(meta, s, label) for s in settings]
    with tempfile.TemporaryDirectory(prefix="hark-rows-") as tmp:
        rows = Path(tmp) / "rows.bin"
        firmware_scores(model, wav, rows, board, pad_ms, timeout)
        return detector_sweep(model, rows, configs, board, timeout=timeout)


def plot_det(rows, path, title, xlabel, ylabel, hours, target_fa=None, target_recall=None,
             chosen=None, log_x=True):
    """Miss rate against false accepts per hour: one curve per averaging window, one point
    per threshold. rows: dicts with average_window_ms, threshold, recall, fa_per_hour.
    log_x=False: a linear x axis from 0 (for a share rather than a rate)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1 / (2 * hours) if log_x else 0  # zero false accepts drawn at half of one
    fig, ax = plt.subplots(figsize=(7, 5))
    for window in sorted({r["average_window_ms"] for r in rows}):
        mine = [r for r in rows if r["average_window_ms"] == window]
        fa = [max(r["fa_per_hour"], floor) for r in mine]
        miss = [100 * (1 - r["recall"]) for r in mine]
        ax.plot(fa, miss, "o-", ms=3, label=f"average over {window} ms")
        for x, y, r in zip(fa, miss, mine):
            ax.annotate(f"{r['threshold']:g}", (x, y), textcoords="offset points",
                        xytext=(3, 3), fontsize=6)
    if chosen:
        ax.plot([max(chosen["fa_per_hour"], floor)], [100 * (1 - chosen["recall"])], "k*", ms=12,
                label=f"chosen: {chosen['average_window_ms']} ms, {chosen['threshold']:g}")
    if target_fa is not None:
        ax.axvline(target_fa, color="grey", ls="--", lw=0.8)
    if target_recall is not None:
        ax.axhline(100 * (1 - target_recall), color="grey", ls="--", lw=0.8)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel + (" (0 drawn at half of one)" if log_x else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
