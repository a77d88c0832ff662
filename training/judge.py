"""The speech teacher as a judge of synthetic voices: how often does a network that has heard
many real speakers hear each voice family's "on" as on, its "off" as off?

    python -m hark.training.judge --data DATA data/synth/commands data/synth_new/commands

The teacher head is trained on DATA's training split (cached, as in `hark train --teacher`;
with --cv-folds K --cv-fold I, the same head as that cross-validation fold's run);
every clip of the synthetic folders is labelled, and the table gives per engine and word the
share heard as the word itself and the most common other label. A voice whose words the
teacher mishears (most MBROLA voices' "off" is heard as "up", REFERENCE.md) teaches a student
the same mistake; `hark train --teacher-filter P` drops such clips, and the table counts how
many of each family it keeps (--min-prob P).
"""
import argparse
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from . import dataset as ds
from .distill import train_teacher
from .features import fit_clip
from .teacher import soft_targets
from .train import apply_cv_fold


def voice_table(folder: Path) -> dict:
    """{relative path: engine} from the folder's voices.csv (`hark synth` writes it)."""
    return {row["path"]: row["engine"] for row in ds.voice_rows(folder) or []}


def judge(teacher, folders, labels, words, min_prob: float = 0.3) -> dict:
    """{(engine, word): {"n", "heard_right", "kept", "top_error"}} over the folders' clips of
    words ("_unknown_" among them: every unknown word, counted as one); "kept": clips given at
    least min_prob of their own label, which is what `hark train --teacher-filter min_prob`
    keeps."""
    results = defaultdict(lambda: {"n": 0, "heard_right": 0, "kept": 0, "errors": Counter()})
    for folder in map(Path, folders):
        engines = voice_table(folder)
        clips = [c for c in ds.load_dataset(folder, labels, require_labels=False).clips
                 if c.word in words or (c.label == ds.UNKNOWN and ds.UNKNOWN in words)]
        audio, kept, _ = ds.load_clips(clips)
        if not kept:
            continue
        probs = soft_targets(teacher.logits([fit_clip(y) for y in audio]), 1.0)
        for c, p in zip(kept, probs):
            h = p.argmax()
            rel = f"{c.word}/{c.path.name}"
            r = results[(engines.get(rel, "?"), ds.UNKNOWN if c.label == ds.UNKNOWN else c.word)]
            r["n"] += 1
            r["kept"] += int(p[labels.index(c.label)] >= min_prob)
            if labels[h] == c.label:
                r["heard_right"] += 1
            else:
                r["errors"][labels[h]] += 1
    return {k: {"n": v["n"], "heard_right": v["heard_right"], "kept": v["kept"],
                "top_error": v["errors"].most_common(1)[0] if v["errors"] else None}
            for k, v in sorted(results.items())}


def markdown(results: dict, min_prob: float) -> str:
    lines = [f"| engine | word | clips | heard as the word | kept at P = {min_prob} | "
             "most common error |", "|---|---|---:|---:|---:|---|"]
    for (engine, word), r in results.items():
        err = f"{r['top_error'][0]} ({r['top_error'][1]})" if r["top_error"] else "—"
        lines.append(f"| {engine} | {word} | {r['n']} | "
                     f"{100 * r['heard_right'] / r['n']:.0f} % | "
                     f"{100 * r['kept'] / r['n']:.0f} % | {err} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hark.training.judge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="synthetic folders from `hark synth`")
    parser.add_argument("--data", required=True, help="real Speech Commands-layout folder")
    parser.add_argument("--words", default="on,off",
                        help="words to judge, _unknown_ for all unknown words (default on,off)")
    parser.add_argument("--min-prob", type=float, default=0.3, metavar="P",
                        help="also count the clips `hark train --teacher-filter P` keeps "
                             "(default 0.3)")
    parser.add_argument("--cv-folds", type=int, default=0, metavar="K",
                        help="judge with the head that `hark train --cv-folds K --cv-fold I` "
                             "trains (its fold's speakers left out), not the training split's")
    parser.add_argument("--cv-fold", type=int, default=0, metavar="I")
    parser.add_argument("--out", help="also write the table to this .md file")
    args = parser.parse_args(argv)
    labels = list(ds.LABELS)
    real = ds.load_dataset(args.data, labels)
    if args.cv_folds:
        apply_cv_fold([real], args.cv_folds, args.cv_fold)
    train_audio, train_clips, _ = ds.load_clips(real.split("train"))
    val_audio, val_clips, _ = ds.load_clips(real.split("validation"))
    noise = ds.load_noise(real)
    teacher = train_teacher(train_audio, train_clips, val_audio, val_clips, noise, labels, seed=0)
    table = markdown(judge(teacher, args.folders, labels, set(args.words.split(",")),
                           args.min_prob), args.min_prob)
    if args.out:
        Path(args.out).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
