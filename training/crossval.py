"""Speaker-grouped cross-validation: the dev measurement that predicts real speakers.

The dev test list holds 1 "on", 1 "off" and 11 unknown-word clips, so it cannot tell
recipes apart where they differ most. Here every real on/off/unknown-word clip is tested
once per seed, by a model that never trained on its speaker (`hark train --cv-folds K
--cv-fold I`); the plentiful commands are scored on the test list in every fold.

    python -m hark.training.crossval --out runs/cv/default --folds 4 --seeds 0 1 2 -- \\
        --data DATA --synth data/synth/commands data/synth/unknown --width 64 ...

writes one run per (seed, fold) (a finished run is reused, so an interrupted sweep resumes),
then cv.json and cv.md: per seed and as mean ± spread, recall of on, off, _unknown_,
_silence_ and the eight plentiful commands, for the student and, with --teacher, the teacher.

--offsets _unknown_=-1,0,0.5,1 also scores every fold's model with that class's logit raised
by each value (what `hark export --logit-offset` folds into a blob) and writes offsets.md: the
offset for a recipe is chosen here, on speakers no fold trained on, not on the dev lists.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from .dataset import COMMANDS, SILENCE, UNKNOWN
from .train import SCARCE_LABELS

PLENTIFUL = [w for w in COMMANDS if w not in SCARCE_LABELS]
COLUMNS = ["on", "off", UNKNOWN, SILENCE, "8 commands", "all"]


def run_folds(out: Path, folds: int, seeds, train_args) -> None:
    for seed in seeds:
        for fold in range(folds):
            run = out / f"seed{seed}_fold{fold}"
            if (run / "metrics.json").exists():
                continue
            cmd = [sys.executable, "-m", "hark.cli", "train", *train_args, "--seed", str(seed),
                   "--cv-folds", str(folds), "--cv-fold", str(fold), "--out", str(run)]
            print(f"== seed {seed} fold {fold + 1}/{folds}", flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def seed_summary(metrics_list) -> dict:
    """Recall per column for one seed, from its folds' test results. Scarce clips occur in
    exactly one fold, so their confusion rows are summed; the plentiful commands and
    silence are tested in every fold and averaged."""
    labels = metrics_list[0]["labels"]
    confusion = sum(np.asarray(m["confusion"]) for m in metrics_list)

    def recall(label):
        row = confusion[labels.index(label)]
        return float(row[labels.index(label)] / row.sum()) if row.sum() else float("nan")

    out = {label: recall(label) for label in ("on", "off", UNKNOWN, SILENCE)}
    out["8 commands"] = float(np.mean([recall(w) for w in PLENTIFUL]))
    # "all": each of the 12 classes weighted equally, as on a balanced test set
    out["all"] = float(np.nanmean([recall(l) for l in labels]))
    out["n"] = {label: int(confusion[labels.index(label)].sum()) for label in labels}
    return out


def summarise(out: Path, folds: int, seeds) -> dict:
    result = {"folds": folds, "seeds": list(seeds), "student": {}, "teacher": {}}
    for seed in seeds:
        runs = [json.loads((out / f"seed{seed}_fold{f}" / "metrics.json").read_text())
                ["float_test"] for f in range(folds)]
        result["student"][seed] = seed_summary(runs)
        if all("teacher" in r for r in runs):
            result["teacher"][seed] = seed_summary([r["teacher"]["test"] for r in runs])
    for who in ("student", "teacher"):
        per_seed = result[who]
        if per_seed:
            result[who + "_mean"] = {c: float(np.mean([s[c] for s in per_seed.values()]))
                                     for c in COLUMNS}
            result[who + "_std"] = {c: float(np.std([s[c] for s in per_seed.values()]))
                                    for c in COLUMNS}
    return result


def markdown(result: dict, name: str) -> str:
    n = next(iter(result["student"].values()))["n"]
    head = (f"| {name} | " + " | ".join(
        f"{c} (n={n[c]})" if c in n else c for c in COLUMNS) + " |")
    lines = [head, "|---|" + "---:|" * len(COLUMNS)]
    for who in ("student", "teacher"):
        if not result[who]:
            continue
        mean, std = result[who + "_mean"], result[who + "_std"]
        cells = [f"{100 * mean[c]:.1f} ± {100 * std[c]:.1f}" for c in COLUMNS]
        lines.append(f"| {who}, {len(result[who])} seeds | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def offset_summaries(logits_by_seed, label: str, offsets) -> dict:
    """{offset: {seed: seed_summary}} with `label`'s logit raised by each offset.
    logits_by_seed: {seed: [(logits, y_true, labels) per fold]}."""
    from .report import classification_metrics

    out = {}
    for offset in offsets:
        out[offset] = {}
        for seed, folds in logits_by_seed.items():
            runs = []
            for logits, y, labels in folds:
                z = np.array(logits, np.float64)
                z[:, labels.index(label)] += offset
                runs.append(classification_metrics(y, z.argmax(axis=1), labels))
            out[offset][seed] = seed_summary(runs)
    return out


def fold_logits(run: Path):
    """(logits, true class indices, labels) of a finished fold's float model on its test clips."""
    import keras

    from .features import Normalisation
    from .models import logits_of

    config = json.loads((run / "config.json").read_text())
    data = np.load(run / "test_features.npz")
    logit_model = logits_of(keras.models.load_model(run / "model.keras"))
    x = Normalisation.from_dict(config["normalisation"]).apply(data["x"])
    return logit_model.predict(x, batch_size=256, verbose=0), data["y"], config["labels"]


def offsets_markdown(scan: dict, label: str) -> str:
    lines = [f"| `{label}` logit offset | " + " | ".join(COLUMNS) + " | 12 classes per seed |",
             "|---:|" + "---:|" * (len(COLUMNS) + 1)]
    for offset, per_seed in scan.items():
        cells = [f"{100 * np.mean([s[c] for s in per_seed.values()]):.1f}" for c in COLUMNS]
        seeds = " / ".join(f"{100 * s['all']:.1f}" for s in per_seed.values())
        lines.append(f"| {offset:+g} | " + " | ".join(cells) + f" | {seeds} |")
    return "\n".join(lines) + "\n"


def parse_offsets(text: str):
    """"_unknown_=-1,0,0.5,1" -> ("_unknown_", [-1.0, 0.0, 0.5, 1.0])."""
    label, _, values = text.partition("=")
    return label.strip(), [float(v) for v in values.split(",") if v.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hark.training.crossval",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the runs and the summary")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="", help="row name in cv.md (default: --out's name)")
    parser.add_argument("--offsets", metavar="LABEL=V,V,...",
                        help="also score every fold with LABEL's logit raised by each V "
                             "(offsets.md), e.g. _unknown_=-1,0,0.5,1,1.5,2")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="after --: `hark train` options (not --seed/--out/--cv-*)")
    args = parser.parse_args(argv)
    train_args = [a for a in args.train_args if a != "--"]
    banned = {"--seed", "--out", "--cv-folds", "--cv-fold"}.intersection(train_args)
    if banned:
        parser.error(f"{', '.join(sorted(banned))} are set per run by crossval")
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    try:
        offset_label, offsets = parse_offsets(args.offsets) if args.offsets else ("", [])
    except ValueError:
        parser.error(f"--offsets {args.offsets}: give LABEL=V,V,..., e.g. _unknown_=0,0.5,1")
    if args.offsets and not offsets:
        parser.error("--offsets names no value: e.g. _unknown_=0,0.5,1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_args.json").write_text(json.dumps(train_args))
    run_folds(out, args.folds, args.seeds, train_args)
    result = summarise(out, args.folds, args.seeds)
    (out / "cv.json").write_text(json.dumps(result, indent=2))
    table = markdown(result, args.name or out.name)
    (out / "cv.md").write_text(table)
    print(table)
    if offsets:
        logits = {seed: [fold_logits(out / f"seed{seed}_fold{f}") for f in range(args.folds)]
                  for seed in args.seeds}
        scan = offsets_markdown(offset_summaries(logits, offset_label, offsets), offset_label)
        (out / "offsets.md").write_text(scan)
        print(scan)


if __name__ == "__main__":
    main()
