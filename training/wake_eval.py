"""Wake-word evaluation through the firmware: recall on held-out synthetic voices and false
accepts per hour on real speech without the wake word, for a range of thresholds (a DET curve).

Two kinds of stream (training/stream.py compose_stream, words over background noise):
- recall: the wake phrase from `hark synth --voice-set holdout` (voices never trained on)
  among that folder's unknown words; recall = wake phrases detected within 1 s of their end;
- false accepts: real Speech Commands clips of every word (none is the wake phrase), by
  default from the test and validation lists only (speakers the model never trained on),
  one stream per hour, each with its own seed.

Each stream runs once through the real firmware pipeline in the MicroPython unix port
(device front end, streaming int8 engine); the firmware's own detector (firmware/detector.py,
grammar mode `wake`) is instantiated once per (averaging window, threshold) pair and fed the
same score rows, so one pass gives every point of the curves with the detector the device runs.
The averaging window matters for a wake phrase: the model is sure of it only while the whole
phrase is inside its 1 s input, a few hundred ms, so a long average dilutes it.
"""
import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from . import blob as blobfile
from . import dataset as ds
from . import sweep
from .report import num
from .stream import RATE, _synth_unknown, compose_stream, score_stream

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
WINDOWS_MS = (200, 400, 700, 1000)
TOLERANCE_S = 1.0
PAD_MS = 1000
TARGET_FA_PER_HOUR = 0.5
TARGET_RECALL = 0.9


def wake_board(wake_word: str) -> dict:
    """The unix board profile in `wake` grammar mode for wake_word."""
    from hark import boards
    from hark.unixport import host_profile

    board = host_profile(boards.load("unix"))
    board["grammar"] = {"mode": "wake", "wake_word": wake_word, "command_window_ms": 0}
    return board


def settings_grid(windows=WINDOWS_MS, thresholds=THRESHOLDS) -> list:
    return sweep.settings_grid(windows, thresholds)


def firmware_sweep(model, wav, settings, pad_ms=PAD_MS, timeout=None) -> list:
    """Detection times [[time_s, ...] per setting] of the firmware in wake mode on a WAV file;
    settings: (average_window_ms, threshold) pairs."""
    from hark.cli import HarkError

    meta, _ = blobfile.read_blob(model)
    wake = [l for l in meta["labels"] if not l.startswith("_")]
    if len(wake) != 1:
        raise HarkError(f"{model}: a wake-word model has one label besides _silence_/_unknown_, "
                        f"this one has {wake}; train it with `hark train --wake PHRASE`")
    found = sweep.firmware_sweep(model, wav, settings, wake_board(wake[0]), wake[0], pad_ms, timeout)
    return [[t for t, _ in dets] for dets in found]


def recall_stream(eval_dir, label, bank, seconds, seed, out_wav=None):
    """The wake phrase among unknown words, all from voices held out of training."""
    clips = _synth_unknown(eval_dir)
    if not clips:
        raise ds.DatasetError(f"{eval_dir}: no held-out synthetic clips; make them with "
                              f"`hark synth --words \"{label.replace('_', ' ')}:200\" "
                              "--voice-set holdout --out DIR`")
    targets = [p for p in clips if p.parent.name == label]
    if not targets:
        raise ds.DatasetError(f"{eval_dir}: no {label}/ clips from held-out voices")
    distractors = [p for p in clips if p.parent.name != label]
    return compose_stream(targets, distractors, bank, seconds, seed, 0.5, out_wav=out_wav)


def negatives_stream(data_dir, seconds, seed, splits=("test", "validation"), out_wav=None):
    """Real speech of every word in `splits` (none of it the wake phrase) over noise."""
    d = ds.load_dataset(data_dir, require_labels=False)
    clips = [c for c in d.clips if c.split in splits]
    if not clips:
        raise ds.DatasetError(f"{data_dir}: no clips in the {'/'.join(splits)} lists")
    return compose_stream([], [c.path for c in clips], ds.load_noise(d), seconds, seed,
                          0.0, {c.path: c.word for c in clips}, out_wav)


def _score(found, events, seconds, label):
    return [score_stream([(t, label) for t in dets], events, TOLERANCE_S, seconds) for dets in found]


def operating_point(rows, max_fa=TARGET_FA_PER_HOUR):
    """The row with the best recall among those at <= max_fa false accepts per hour (then
    the fewest false accepts, then the highest threshold: margin); None when none gets there."""
    ok = [r for r in rows if r["fa_per_hour"] <= max_fa]
    return max(ok, key=lambda r: (r["recall"], -r["fa_per_hour"], r["threshold"])) if ok else None


def evaluate_wake(model, data_dir, eval_dir, out_dir, hours=1, recall_seconds=1500, seed=11,
                  splits=("test", "validation"), settings=None, log=print) -> dict:
    """Both streams through the firmware; writes out_dir/wake_eval.json, det.md, det.png."""
    settings = settings or settings_grid()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta, _ = blobfile.read_blob(model)
    label = [l for l in meta["labels"] if not l.startswith("_")][0]
    bank = ds.load_noise(ds.load_dataset(data_dir, require_labels=False))
    with tempfile.TemporaryDirectory(prefix="hark-wake-") as tmp:
        wav = Path(tmp) / "stream.wav"
        audio, events = recall_stream(eval_dir, label, bank, recall_seconds, seed, wav)
        secs = len(audio) / RATE + PAD_MS / 1000
        rec = _score(firmware_sweep(model, wav, settings), events, secs, label)
        log(f"recall stream: {secs / 60:.1f} min, {rec[0]['targets']} wake phrases, "
            f"{rec[0]['distractors']} unknown words")
        fa_runs, neg_hours, neg_words = [], 0.0, 0
        for h in range(int(np.ceil(hours))):
            length = 3600 * min(1.0, hours - h)
            audio, events = negatives_stream(data_dir, length, seed + 1 + h, splits, wav)
            secs = len(audio) / RATE + PAD_MS / 1000
            fa_runs.append(_score(firmware_sweep(model, wav, settings), events, secs, label))
            neg_hours += secs / 3600
            neg_words += len(events)
            log(f"negatives stream {h + 1}: {secs / 60:.1f} min, {len(events)} words, "
                f"false accepts {[r['false_accepts'] for r in fa_runs[-1]]}")
    rows = []
    for i, (window, thr) in enumerate(settings):
        fa = sum(run[i]["false_accepts"] for run in fa_runs)
        rows.append({"average_window_ms": window, "threshold": thr, "recall": 1 - rec[i]["frr"], "hits": rec[i]["hits"],
                     "targets": rec[i]["targets"], "fa_per_hour": fa / neg_hours,
                     "false_accepts": fa, "synth_unknown_false_accepts": rec[i]["false_accepts"],
                     "latency_ms_median": rec[i]["latency_ms_median"]})
    result = {"model": str(model), "label": label, "data": str(data_dir), "eval": str(eval_dir),
              "negative_hours": neg_hours, "negative_words": neg_words, "splits": list(splits),
              "recall_stream_minutes": rec[0]["hours"] * 60, "seed": seed,
              "engine": "firmware (MicroPython unix port, streaming int8, firmware detector)",
              "detector": meta.get("detector"), "rows": rows,
              "operating_point": operating_point(rows)}
    (out_dir / "wake_eval.json").write_text(json.dumps(result, indent=1))
    (out_dir / "det.md").write_text(det_table(result))
    plot_det(result, out_dir / "det.png")
    return result


def det_table(result) -> str:
    lines = [f"Wake word `{result['label']}`: recall on {result['rows'][0]['targets']} held-out-voice "
             f"synthetic phrases, false accepts on {result['negative_hours']:.2f} h of real speech "
             f"({result['negative_words']} words, {'/'.join(result['splits'])} lists) over noise; "
             f"{result['engine']}.", "",
             "| window ms | threshold | recall | false accepts | FA / hour | FA on held-out synthetic unknown words | median latency ms |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lat = num(r["latency_ms_median"], "{:.0f}")
        lines.append(f"| {r['average_window_ms']} | {r['threshold']:.2f} | {100 * r['recall']:.1f}% ({r['hits']}/{r['targets']}) | "
                     f"{r['false_accepts']} | {r['fa_per_hour']:.2f} | "
                     f"{r['synth_unknown_false_accepts']} | {lat} |")
    op = result["operating_point"]
    lines += ["", f"Operating point (best recall at <= {TARGET_FA_PER_HOUR} FA/h): " +
              (f"window {op['average_window_ms']} ms, threshold {op['threshold']:.2f}, recall {100 * op['recall']:.1f}%, "
               f"{op['fa_per_hour']:.2f} FA/h" if op else "none")]
    return "\n".join(lines) + "\n"


def plot_det(result, path):
    sweep.plot_det(result["rows"], path,
                   f"{result['label']}: DET through the firmware (points: thresholds)",
                   f"false accepts per hour (real speech, {result['negative_hours']:.1f} h)",
                   "miss rate % (held-out synthetic voices)", result["negative_hours"],
                   TARGET_FA_PER_HOUR, TARGET_RECALL, result.get("operating_point"))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hark.training.wake_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="wake-word model blob (hark export)")
    p.add_argument("--data", required=True, help="real Speech Commands-layout folder (negatives, noise)")
    p.add_argument("--eval", required=True, help="hark synth --voice-set holdout folder with the phrase")
    p.add_argument("--out", required=True, help="folder for wake_eval.json, det.md, det.png")
    p.add_argument("--hours", type=float, default=1.0, help="hours of real negatives (default 1)")
    p.add_argument("--recall-seconds", type=float, default=1500, help="recall stream length")
    p.add_argument("--splits", default="test,validation",
                   help="real lists the negatives come from (train,validation,test)")
    p.add_argument("--windows", default=",".join(map(str, WINDOWS_MS)),
                   help="detector averaging windows in ms to try")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    settings = settings_grid([int(w) for w in args.windows.split(",")])
    res = evaluate_wake(args.model, args.data, args.eval, args.out, args.hours,
                        args.recall_seconds, args.seed, tuple(args.splits.split(",")), settings)
    print(det_table(res))


if __name__ == "__main__":
    main()
