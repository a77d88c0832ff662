"""`python -m hark.training.gates RUN [RUN ...]`: the table of full-data seeds put through the
gates that chose the default (`make gate-seeds`): edge audio, the dev test and validation lists,
the 1 h validation-speaker stream, held-out synthetic on/off. One markdown row per run and their
mean, so a training change is judged on what cross-validation cannot see (docs/accuracy.md)."""
import json
import sys
from pathlib import Path

import numpy as np

FA_BUDGETS = (5, 10, 20, 30, 40)        # false accepts per hour
POINT = (500, 0.825)                    # every gates table's window ms and threshold
NEEDED = ("nonspeech.json", "eval_test.json", "eval_validation.json",   # eval_holdout.json:
          "stream_validation/stream_det.json")                           # after `make synth`
HEADER = ("| run | DC + noise, 18 offsets | dev test list | validation list | 1 h validation "
          "stream, 500 ms 0.825 | best at ≤ 5 / 10 / 20 / 30 / 40 FA/h, validation stream | "
          "held-out synthetic on / off (with the default's offsets) |\n"
          "|---|---|---:|---:|---:|---:|---:|")


def figures(run: Path) -> dict:
    """What one run's gate outputs say, as numbers (percent, false accepts per hour)."""
    def load(name):
        return json.loads((run / name).read_text())
    fired = {signal: dets for signal, dets in load("nonspeech.json").items() if dets}
    rows = load("stream_validation/stream_det.json")["rows"]
    point = next(r for r in rows if r["average_window_ms"] == POINT[0]
                 and abs(r["threshold"] - POINT[1]) < 1e-9)
    holdout = load("eval_holdout.json")["per_class"] if (run / "eval_holdout.json").exists() \
        else None
    return {"fired": fired,
            "test": 100 * load("eval_test.json")["accuracy"],
            "validation": 100 * load("eval_validation.json")["accuracy"],
            "recall": 100 * point["recall"], "fa_per_hour": point["fa_per_hour"],
            "best": [100 * max([r["recall"] for r in rows if r["fa_per_hour"] <= budget],
                               default=0.0) for budget in FA_BUDGETS],
            "on_off": [100 * holdout[w]["recall"] for w in ("on", "off")] if holdout else None}


def row(name: str, f: dict) -> str:
    fired = f["fired"]
    edge = "quiet" if not fired else f"fires ({len(fired)}: " + "; ".join(
        f"{signal} {' '.join(dets)}" for signal, dets in list(fired.items())[:3]) + \
        (" …)" if len(fired) > 3 else ")")
    on_off = " / ".join(f"{v:.1f}" for v in f["on_off"]) + " %" if f["on_off"] else "—"
    return (f"| {name} | {edge} | {f['test']:.2f} % | {f['validation']:.2f} % | "
            f"{f['recall']:.1f} %, {f['fa_per_hour']:.0f} FA/h | "
            f"{' / '.join(f'{b:.1f}' for b in f['best'])} % | {on_off} |")


def mean_row(runs: list) -> str:
    n_fired = sum(1 for f in runs if f["fired"])
    mean = lambda key: np.mean([f[key] for f in runs], axis=0)
    on_off = [f["on_off"] for f in runs if f["on_off"]]
    edge = f"fires on {n_fired} of {len(runs)}" if n_fired else f"quiet (all {len(runs)})"
    return (f"| mean of {len(runs)} | {edge} | {mean('test'):.2f} % | {mean('validation'):.2f} % | "
            f"{mean('recall'):.1f} %, {mean('fa_per_hour'):.0f} FA/h | "
            f"{' / '.join(f'{b:.1f}' for b in mean('best'))} % | "
            + (" / ".join(f"{v:.1f}" for v in np.mean(on_off, axis=0)) + " %" if on_off else "—")
            + " |")


def table(runs) -> str:
    found = [(Path(r).name, figures(Path(r))) for r in runs]
    lines = [HEADER, *(row(name, f) for name, f in found)]
    if len(found) > 1:
        lines.append(mean_row([f for _, f in found]))
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+", help="run folders that `make gate-seed` filled")
    args = p.parse_args(argv)
    missing = [f"{r}/{name}" for r in args.runs for name in NEEDED
               if not (Path(r) / name).exists()]
    if missing:
        print("gates: not every gate has run: missing " + ", ".join(missing[:4]) +
              (" …" if len(missing) > 4 else "") + "; run `make gate-seed` for it first",
              file=sys.stderr)
        return 1
    print(table(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
