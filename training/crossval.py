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
by each value (what `hark export --logit-offset` folds into a blob) and writes
offsets-_unknown_.md: the offset for a recipe is chosen here, on speakers no fold trained on,
not on the dev lists. --offsets on,off=0,1,2 raises both classes' logits by each value
together, --with-offset _unknown_=1 (repeatable) holds another class's offset in every row
(offsets-on,off-with-_unknown_+1.md), and each scan counts the clips of other classes the
raised ones take: their cost where clips are plentiful.

--rooms 200 also plays every fold's test clips as a microphone 1-3 m away hears them (200
simulated rooms, none a training room, RT60 0.2-0.7 s, noise at 10-25 dB SNR; the same audio for
every recipe) and adds the row "student in simulated rooms": a board across a room.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from .dataset import COMMANDS, SILENCE, UNKNOWN
from .export import label_values
from .rooms import MEASUREMENT_SEED
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
        add_spread(result, who)
    return result


def add_spread(result: dict, who: str) -> None:
    """result[who + "_mean"] and [who + "_std"] over the seeds of result[who], if any."""
    per_seed = result.get(who)
    if per_seed:
        result[who + "_mean"] = {c: float(np.mean([s[c] for s in per_seed.values()]))
                                 for c in COLUMNS}
        result[who + "_std"] = {c: float(np.std([s[c] for s in per_seed.values()]))
                                for c in COLUMNS}


def markdown(result: dict, name: str) -> str:
    n = next(iter(result["student"].values()))["n"]
    head = (f"| {name} | " + " | ".join(
        f"{c} (n={n[c]})" if c in n else c for c in COLUMNS) + " |")
    lines = [head, "|---|" + "---:|" * len(COLUMNS)]
    for who, row in (("student", "student"), ("teacher", "teacher"),
                     ("rooms", "student in simulated rooms")):
        if not result.get(who):
            continue
        mean, std = result[who + "_mean"], result[who + "_std"]
        cells = [f"{100 * mean[c]:.1f} ± {100 * std[c]:.1f}" for c in COLUMNS]
        lines.append(f"| {row}, {len(result[who])} seeds | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def offset_summaries(logits_by_seed, labels_raised, offsets, fixed=None) -> dict:
    """{offset: {seed: seed_summary}} with each of `labels_raised`'s logits raised by each offset
    and `fixed` ({label: offset}) applied in every row. Each summary also counts "taken": clips
    of other classes now decided as one of `labels_raised`.
    logits_by_seed: {seed: [(logits, y_true, labels) per fold]}."""
    from .report import classification_metrics

    out = {}
    for offset in offsets:
        out[offset] = {}
        for seed, folds in logits_by_seed.items():
            runs, taken = [], 0
            for logits, y, labels in folds:
                z = np.array(logits, np.float64)
                for label, value in (fixed or {}).items():
                    z[:, labels.index(label)] += value
                raised = [labels.index(label) for label in labels_raised]
                z[:, raised] += offset
                decided = z.argmax(axis=1)
                others = ~np.isin(y, raised)
                taken += int(np.isin(decided[others], raised).sum())
                runs.append(classification_metrics(y, decided, labels))
            out[offset][seed] = {**seed_summary(runs), "taken": taken}
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


def offsets_markdown(scan: dict, labels_raised, fixed=None) -> str:
    names = ", ".join(f"`{label}`" for label in labels_raised)
    held = "".join(f", `{label}` {value:+g} in every row" for label, value in (fixed or {}).items())
    lines = [f"| {names} logit offset{held} | " + " | ".join(COLUMNS)
             + f" | 12 classes per seed | other clips taken by {names} per seed |",
             "|---:|" + "---:|" * (len(COLUMNS) + 2)]
    for offset, per_seed in scan.items():
        cells = [f"{100 * np.mean([s[c] for s in per_seed.values()]):.1f}" for c in COLUMNS]
        seeds = " / ".join(f"{100 * s['all']:.1f}" for s in per_seed.values())
        taken = " / ".join(str(s["taken"]) for s in per_seed.values())
        lines.append(f"| {offset:+g} | " + " | ".join(cells) + f" | {seeds} | {taken} |")
    return "\n".join(lines) + "\n"


ROOM_SNR_DB = (10.0, 25.0)  # background noise over the room's sound


def far_field(audio, rirs, noise_bank, seed: int):
    """Each 1 s clip as a microphone 1-3 m away hears it: in a random room of `rirs`
    (rooms.in_room), then background noise at 10-25 dB SNR; the same seed, the same rooms and
    noise clip by clip, so recipes are compared on identical audio."""
    from .augment import add_noise, noise_segment
    from .rooms import in_room

    rng = np.random.default_rng(seed)
    out = []
    for y in audio:
        wet = in_room(y, rirs[rng.integers(len(rirs))])
        if len(noise_bank):
            noise = noise_segment(noise_bank, len(wet), rng)
            wet = add_noise(wet, noise, rng.uniform(*ROOM_SNR_DB))
        out.append(np.clip(wet, -1.0, 1.0).astype(np.float32))
    return out


def fold_test_audio(config: dict):
    """(1 s clips, true class indices, noise bank) of a fold's test set, as `hark train --cv-fold`
    built it: the fold's speakers' scarce clips and the test list's plentiful commands, then one
    class's worth of `_silence_` cut from the noise (a fixed generator: the same for every run)."""
    from . import dataset as ds
    from .train import apply_cv_fold, eval_clips

    labels = config["labels"]
    real = [ds.load_dataset(p, labels) for p in config["data"]]
    apply_cv_fold(real, config["cv_folds"], config["cv_fold"])
    clips = [c for d in real for c in d.split("test")]
    audio, kept, _ = ds.load_clips(clips)
    noise = [n for d in real for n in ds.load_noise(d)]
    ys, y_true = eval_clips(audio, kept, noise, labels, np.random.default_rng(MEASUREMENT_SEED))
    return ys, y_true, noise


def room_summaries(out: Path, folds: int, seeds, n_rooms: int) -> dict:
    """{seed: seed_summary} of every fold's float model on its test clips in simulated rooms
    (far_field; n_rooms rooms of rooms.impulse_responses with MEASUREMENT_SEED: none a training
    room)."""
    import keras

    from .features import FeatureSpec, Normalisation, batch_features
    from .report import classification_metrics
    from .rooms import impulse_responses

    rirs = impulse_responses(n_rooms, MEASUREMENT_SEED)
    tests, result = {}, {}
    for seed in seeds:
        runs = []
        for fold in range(folds):
            run = out / f"seed{seed}_fold{fold}"
            config = json.loads((run / "config.json").read_text())
            if fold not in tests:       # every seed's fold holds the same speakers
                ys, y_true, noise = fold_test_audio(config)
                tests[fold] = (far_field(ys, rirs, noise, MEASUREMENT_SEED + fold), y_true)
            audio, y_true = tests[fold]
            x = Normalisation.from_dict(config["normalisation"]).apply(
                batch_features(audio, FeatureSpec.from_dict(config["spec"])))
            model = keras.models.load_model(run / "model.keras", compile=False)
            decided = model.predict(x, batch_size=256, verbose=0).argmax(axis=1)
            runs.append(classification_metrics(y_true, decided, config["labels"]))
        result[seed] = seed_summary(runs)
    return result


def parse_offsets(text: str):
    """"_unknown_=-1,0,0.5,1" -> (["_unknown_"], [-1.0, 0.0, 0.5, 1.0]); "on,off=0,1" raises both."""
    labels, _, values = text.partition("=")
    return ([label.strip() for label in labels.split(",") if label.strip()],
            [float(v) for v in values.split(",") if v.strip()])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hark.training.crossval",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the runs and the summary")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="", help="row name in cv.md (default: --out's name)")
    parser.add_argument("--offsets", metavar="LABEL[,LABEL]=V,V,...",
                        help="also score every fold with LABEL's logit raised by each V "
                             "(offsets-LABEL.md), e.g. _unknown_=-1,0,0.5,1,1.5,2; on,off=0,1,2 "
                             "raises both together")
    parser.add_argument("--with-offset", action="append", default=[], metavar="LABEL=V",
                        help="with --offsets: hold LABEL's logit raised by V in every row "
                             "(repeatable), e.g. the _unknown_=1 a model already ships with")
    parser.add_argument("--rooms", type=int, default=0, metavar="N",
                        help="also score every fold's test clips as heard 1-3 m away in N "
                             "simulated rooms with noise at 10-25 dB SNR (a row of cv.md; "
                             "rooms no training run draws from), e.g. 200")
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
        offset_labels, offsets = parse_offsets(args.offsets) if args.offsets else ([], [])
        fixed = label_values(args.with_offset)
    except ValueError:
        parser.error(f"--offsets {args.offsets} / --with-offset {args.with_offset}: give "
                     "LABEL=V,V,... and LABEL=V, e.g. --offsets on,off=0,1 --with-offset _unknown_=1")
    if args.offsets and not (offsets and offset_labels):
        parser.error("--offsets names no label or no value: e.g. _unknown_=0,0.5,1")
    if fixed and not offsets:
        parser.error("--with-offset holds an offset fixed in --offsets' scan: give --offsets too")
    if set(fixed) & set(offset_labels):
        parser.error(f"{', '.join(sorted(set(fixed) & set(offset_labels)))}: in both --offsets "
                     "and --with-offset")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_args.json").write_text(json.dumps(train_args))
    run_folds(out, args.folds, args.seeds, train_args)
    result = summarise(out, args.folds, args.seeds)
    if args.rooms:
        result["rooms"] = room_summaries(out, args.folds, args.seeds, args.rooms)
        add_spread(result, "rooms")
    (out / "cv.json").write_text(json.dumps(result, indent=2))
    table = markdown(result, args.name or out.name)
    (out / "cv.md").write_text(table)
    print(table)
    if offsets:
        logits = {seed: [fold_logits(out / f"seed{seed}_fold{f}") for f in range(args.folds)]
                  for seed in args.seeds}
        labels = logits[args.seeds[0]][0][2]
        strange = sorted((set(offset_labels) | set(fixed)) - set(labels))
        if strange:
            parser.error(f"no class {', '.join(strange)} in these models; their labels are "
                         f"{', '.join(labels)}")
        scan = offsets_markdown(offset_summaries(logits, offset_labels, offsets, fixed),
                                offset_labels, fixed)
        held = "".join(f"-with-{label}{value:+g}" for label, value in fixed.items())
        (out / f"offsets-{','.join(offset_labels)}{held}.md").write_text(scan)
        print(scan)


if __name__ == "__main__":
    main()
