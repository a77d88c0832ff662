"""Many detector settings from one firmware pass: the real firmware pipeline (MicroPython unix
port: device front end, int8 engine) runs a WAV once, and its model scores feed one firmware
Detector (firmware/detector.py) per (averaging window, threshold) setting. Every point of a
DET curve then comes from the detector the device runs, at the cost of a single run."""
import json
import os
import subprocess
import tempfile
from pathlib import Path

from . import blob as blobfile

# Runs in the unix port: the firmware Runtime with its detector swapped for a fan of firmware
# Detectors; prints `setting time_ms pct label_index` per detection.
DRIVER = """
import json, sys
import runtime
import options
from detector import Detector

class Fan:
    def __init__(self, dets):
        self.dets = dets

    def update(self, out, t):
        k = 0
        for d in self.dets:
            label = d.update(out, t)
            if label >= 0:
                print("%d %d %d %d" % (k, t, d.last_pct, label))
            k += 1
        return -1

a = json.loads(open(sys.argv[1]).read())
board = options.load_board(a["board"])
rt = runtime.Runtime(a["model"], board, printer=False)
dets = []
for setting in a["settings"]:
    window, thr = setting[0], setting[1]
    cfg = dict(a["config"])
    cfg["average_window_ms"] = window
    if len(setting) > 2:
        cfg["threshold"] = setting[2]
    cfg["thresholds"] = dict(cfg.get("thresholds") or {})
    if a["label"]:
        cfg["thresholds"][a["label"]] = thr
    else:
        cfg["threshold"] = thr
        cfg["thresholds"] = {}
    dets.append(Detector(rt.labels, cfg, rt.engine.output_scale, rt.engine.output_zero_point,
                         rt.hop_ms * rt.infer_every, board.get("grammar")))
rt.detector = Fan(dets)
src = options.make_source(board, a["wav"], False, a["pad_ms"])
rt.run(src)
src.close()
"""


def settings_grid(windows, thresholds) -> list:
    return [(int(w), float(t)) for w in windows for t in thresholds]


def firmware_sweep(model, wav, settings, board, label=None, pad_ms=1000, timeout=None) -> list:
    """Detections [[(time_s, label), ...] per setting] of the firmware on a WAV file.
    settings: (average_window_ms, threshold) pairs; the threshold replaces `label`'s own
    threshold (a wake word) or, without a label, the global one (every per-label override
    dropped). A third value, with a label, replaces the global threshold (the other labels'). board: a host board profile (its grammar applies, else the blob's, as on a
    device)."""
    from hark.cli import HarkError
    from hark.unixport import compile_firmware, micropython_binary

    meta, _ = blobfile.read_blob(model)
    board = dict(board, grammar=board.get("grammar") or meta.get("grammar"))
    code_dir = compile_firmware()
    with tempfile.TemporaryDirectory(prefix="hark-sweep-") as tmp:
        board_path, args_path = Path(tmp) / "board.json", Path(tmp) / "args.json"
        board_path.write_text(json.dumps(board))
        args_path.write_text(json.dumps({
            "model": str(Path(model).resolve()), "board": str(board_path),
            "wav": str(Path(wav).resolve()), "pad_ms": pad_ms, "label": label,
            "config": meta.get("detector") or {},
            "settings": [[int(w), *map(float, rest)] for w, *rest in settings]}))
        driver = Path(tmp) / "driver.py"
        driver.write_text(DRIVER)
        res = subprocess.run([micropython_binary(), "-X", "heapsize=2000000", str(driver),
                              str(args_path)], capture_output=True, text=True, timeout=timeout,
                             env=dict(os.environ, MICROPYPATH=str(code_dir)))
    if res.returncode != 0:
        raise HarkError(f"the firmware failed in the unix port: {res.stderr.strip()[-800:]}")
    found = [[] for _ in settings]
    for line in res.stdout.split("\n"):
        parts = line.split()
        if len(parts) == 4:
            found[int(parts[0])].append((int(parts[1]) / 1000, meta["labels"][int(parts[3])]))
    return found


def plot_det(rows, path, title, xlabel, ylabel, hours, target_fa=None, target_recall=None,
             chosen=None):
    """Miss rate against false accepts per hour: one curve per averaging window, one point
    per threshold. rows: dicts with average_window_ms, threshold, recall, fa_per_hour."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1 / (2 * hours)  # zero false accepts drawn at half of one
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
    ax.set_xscale("log")
    ax.set_xlabel(xlabel + " (0 drawn at half of one)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
