"""`hark export`: trained run -> full-int8 TFLite + firmware model blob."""
import argparse
from pathlib import Path

from hark.boards import detector_errors
from hark.cli import HarkError

HELP = """\
Converts RUN_DIR/model.keras to a full-int8 TFLite model (int8 input and output,
per-channel weights, calibrated on training features) and packs the firmware model blob:
labels, feature spec, front-end tables (window, mel filters, DCT with the normalisation
and input quantisation folded in), the int8 graph and detector defaults, with a magic
header, format version and CRC-32. The .tflite is written beside the blob.

--logit-offset LABEL=V adds V to one class's logit before the softmax (post-hoc logit
adjustment), folded into the int8 dense layer's bias of the .tflite: the same graph and
kernels, so the device stays bit-exact with TFLite Micro. `_unknown_=1` makes a model call
more unknown words unknown for a little command recall (docs/accuracy.md, "Real unseen speakers").

--tflite repacks an already converted model instead (after a blob format change): the same
int8 graph from M.tflite, with labels, feature spec and normalisation from the M.train.json
beside it; no Keras, no re-conversion. `make models` repacks the shipped ones.

examples:
  hark export runs/kws --out models/mine.hark
  hark export runs/kws --out models/mine.hark --logit-offset _unknown_=1
  hark export --tflite models/default.tflite --out models/default.hark --name hark-tcn64-12
"""


def register(sub):
    p = sub.add_parser("export", help="int8 TFLite + model blob", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", help="a `hark train` run directory")
    p.add_argument("--tflite", help="repack this int8 .tflite (and the .train.json beside it) "
                                    "instead of converting a run")
    p.add_argument("--out", help="blob path (default RUN_DIR/model.hark)")
    p.add_argument("--name", help="model name stored in the blob")
    p.add_argument("--threshold", type=float, help="detector threshold (probability, 0..1)")
    p.add_argument("--average-window-ms", type=int,
                   help="detector score averaging window (default: training/export.py "
                        "DETECTOR_DEFAULTS; a wake phrase wants less, see docs/wake.md)")
    p.add_argument("--command-average-ms", type=int,
                   help="a model trained with --wake and --commands: the commands' own averaging "
                        "window after the wake word (default: the --average-window-ms; longer "
                        "lets the said command outweigh a wrong one that leads for a moment)")
    p.add_argument("--label-threshold", action="append", default=[], metavar="LABEL=P",
                   help="one label's own detector threshold, e.g. hey_hark=0.9 (repeatable)")
    p.add_argument("--logit-offset", action="append", default=[], metavar="LABEL=V",
                   help="add V to LABEL's logit, folded into the int8 model (repeatable; "
                        "converting a run only: a repacked .tflite keeps the offsets it has)")
    p.add_argument("--command-window-ms", type=int, default=3000,
                   help="a model trained with --wake and --commands: how long after the wake "
                        "word a command counts (stored with the grammar; default 3000)")
    p.set_defaults(func=run)


def run(args):
    detector = {k: v for k, v in (("threshold", args.threshold),
                                  ("average_window_ms", args.average_window_ms),
                                  ("command_average_ms", args.command_average_ms))
                if v is not None}
    if args.label_threshold:
        detector["thresholds"] = label_thresholds(args.label_threshold)
    if args.command_window_ms <= 0:
        raise HarkError("--command-window-ms must be a whole number of ms > 0")
    bad = detector_errors(detector)
    if bad:
        raise HarkError("; ".join("--" + e.replace("_", "-", 2) for e in bad))
    from hark.training.export import ExportError, export, repack

    try:
        _export(args, detector, export, repack)
    except ExportError as exc:
        raise HarkError(f"{args.tflite or args.run_dir}: {exc}; nothing was written") from None


def label_thresholds(items, option="--label-threshold", example="hey_hark=0.9") -> dict:
    """["hey_hark=0.9", ...] -> {"hey_hark": 0.9} (also --logit-offset's LABEL=V)."""
    from hark.training.export import label_values

    try:
        return label_values(items)
    except ValueError as exc:
        raise HarkError(f"{option} {str(exc)!r}: give a label and a number, e.g. "
                        f"{example}") from None


def _export(args, detector, export, repack):
    if args.tflite:
        if args.logit_offset:
            raise HarkError("--logit-offset is folded in when a run is converted; a .tflite "
                            "keeps the offsets its .train.json records: export the run again")
        tflite = Path(args.tflite)
        if args.run_dir or not args.out:
            raise HarkError("--tflite repacks one model: pass --out M.hark and no run directory")
        if not tflite.exists() or not tflite.with_suffix(".train.json").exists():
            raise HarkError(f"--tflite needs {tflite} and {tflite.with_suffix('.train.json')} "
                            "(written by `hark export` beside the blob)")
        info = repack(tflite, Path(args.out), args.name, detector, args.command_window_ms)
        print(f"wrote {info['path']} ({info['blob_bytes']} bytes) from {tflite}")
        return
    if not args.run_dir:
        raise HarkError("pass a training run directory (or --tflite M.tflite to repack a model)")
    run_dir = Path(args.run_dir)
    if not (run_dir / "model.keras").exists() or not (run_dir / "config.json").exists():
        raise HarkError(f"{run_dir} is not a training run (no model.keras/config.json); "
                        "train one with `hark train --out DIR`")
    out = Path(args.out) if args.out else run_dir / "model.hark"
    offsets = label_thresholds(args.logit_offset, "--logit-offset", "_unknown_=1")
    info = export(run_dir, out, args.name, detector, args.command_window_ms, offsets)
    print(f"wrote {info['path']} ({info['blob_bytes']} bytes) and "
          f"{out.with_suffix('.tflite')} ({info['tflite_bytes']} bytes)")
    print(f"params {info['params']}, MACs/inference {info['macs']}, "
          f"activation arena {info['arena_bytes']} bytes, int8 weights {info['weight_bytes']} bytes")
