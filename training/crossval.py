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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hark.training.crossval",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the runs and the summary")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="", help="row name in cv.md (default: --out's name)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="after --: `hark train` options (not --seed/--out/--cv-*)")
    args = parser.parse_args(argv)
    train_args = [a for a in args.train_args if a != "--"]
    banned = {"--seed", "--out", "--cv-folds", "--cv-fold"}.intersection(train_args)
    if banned:
        parser.error(f"{', '.join(sorted(banned))} are set per run by crossval")
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_args.json").write_text(json.dumps(train_args))
    run_folds(out, args.folds, args.seeds, train_args)
    result = summarise(out, args.folds, args.seeds)
    (out / "cv.json").write_text(json.dumps(result, indent=2))
    table = markdown(result, args.name or out.name)
    (out / "cv.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
