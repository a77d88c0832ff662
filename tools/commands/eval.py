"""`hark eval`: accuracy, per-class recall and confusion matrix of an exported model."""
import argparse
import json
from pathlib import Path

from hark.cli import HarkError

HELP = """\
Evaluates a model blob on a Speech Commands-layout folder: its testing_list.txt if it has
one, else every clip (with a warning: they may include training data), plus _silence_ cut
from its _background_noise_; says which clips it used and warns about list entries that
have no clip. Prints accuracy,
per-class recall (on, off, _unknown_ and _silence_ are reported on their own: they are
scarce in real data), the confusion matrix, and the unknown words least often rejected
with what they were heard as (the words that will trigger commands on a board).

engines:
  tflite    TFLite Micro running MODEL.tflite (the bit-exact int8 reference; default)
  firmware  hark's own int8 engine in the MicroPython unix port
features:
  librosa   the reference front end (default)
  device    the device's integer front end (numpy model, bit-exact with the firmware)

examples:
  hark eval --model models/default.hark --data ../shared/data/speech_commands
  hark eval --model M.hark --data DIR --engine firmware --features device --json out.json --plot cm.png
  hark eval --model M.hark --data DIR --split all --words on,off   # every real on/off clip
  hark eval --model M.hark --data DIR --split all --words _unknown_ # which other words fire
"""


def register(sub):
    p = sub.add_parser("eval", help="evaluate a model", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/default.hark", help="model blob (.hark)")
    p.add_argument("--data", required=True, help="Speech Commands-layout folder")
    p.add_argument("--engine", default="tflite", choices=["tflite", "firmware"])
    p.add_argument("--features", default="librosa", choices=["librosa", "device"])
    p.add_argument("--json", help="write {accuracy, n, per_class, confusion, labels, "
                                  "unknown_words} here")
    p.add_argument("--plot", help="save the confusion matrix as PNG here")
    p.add_argument("--max-per-word", type=int, default=0, help="cap clips per word (quick runs)")
    p.add_argument("--split", default="test", choices=["test", "validation", "train", "all"],
                   help="which clips: the test list (default), or all clips of the folder")
    p.add_argument("--words", default="",
                   help="only these words/labels, e.g. on,off,_unknown_ (scarce-class reports)")
    p.set_defaults(func=run)


def run(args):
    from tqdm import tqdm

    from hark.training import blob, evaluate, report
    from hark.training.dataset import UNKNOWN, DatasetError

    model = Path(args.model)
    if not model.exists():
        raise HarkError(f"{model}: no such model blob; export one with `hark export RUN_DIR`")
    for out in filter(None, (args.json, args.plot)):   # before the work, not after it
        try:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarkError(f"cannot write {out}: {exc.strerror} ({exc.filename})") from None
        if Path(out).is_dir():
            raise HarkError(f"{out} is a folder; pass a file name")
    try:
        meta, arrays = blob.read_blob(model)
    except blob.BlobError as exc:
        raise HarkError(str(exc)) from exc
    labels = meta["labels"]
    try:
        audio, targets, words = evaluate.eval_clips(
            args.data, labels, max_per_word=args.max_per_word, split=args.split,
            words=[w for w in args.words.split(",") if w] or None,
            progress=lambda it: tqdm(it, desc="reading", unit="clip", leave=False), say=print)
    except DatasetError as exc:
        raise HarkError(str(exc)) from exc
    if args.features == "device":
        x = evaluate.device_int8(audio, meta, arrays)
    else:
        x = evaluate.reference_int8(audio, meta)
    try:
        y = evaluate.run_engine(args.engine, model, x, meta)
    except FileNotFoundError as exc:
        raise HarkError(str(exc)) from exc
    predicted = y.argmax(axis=1)
    metrics = report.classification_metrics(targets, predicted, labels)
    print(report.format_metrics(
        metrics, f"{model} on {args.data} (engine {args.engine}, features {args.features})"))
    if UNKNOWN in labels:
        metrics["unknown_words"] = report.unknown_words(words, targets, predicted, labels)
        if metrics["unknown_words"]:
            print(report.format_unknown_words(metrics["unknown_words"]))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    if args.plot:
        report.plot_confusion(metrics, args.plot, f"{model.stem} ({args.engine})")
        print(f"confusion matrix saved to {args.plot}")
