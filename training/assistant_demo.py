"""The bundled demo of the wake word + command flow (samples/assistant/, `make demo`): three
commands alone, which the `wake+command` grammar keeps silent, then four "hey hark" + command
pairs, each of which fires. Wake phrases: voices held out of training (`hark synth --voice-set
holdout`); commands: the real speakers of samples/ (Speech Commands test/validation lists).

    python -m hark.training.assistant_demo --data DATA --eval data/synth/wake_eval --out samples/assistant
"""
import argparse
import json
from pathlib import Path

import numpy as np

from . import augment as aug
from . import dataset as ds
from .stream import RATE, to_int16, word_span

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
ALONE = ("yes__0ab3b47d_nohash_0", "on__6a27a9bf_nohash_0", "stop__1aed7c6d_nohash_0")
# (held-out voice of the wake phrase, sample command after it)
PAIRS = (("festival-ked-diphone", "on__439c84f4_nohash_1"),
         ("espeak-en-us-nyc-linda", "off__439c84f4_nohash_1"),
         ("espeak-en-gb-x-rp-m4", "yes__1aed7c6d_nohash_0"),
         ("espeak-en-us-grandma", "stop__62641b88_nohash_0"))
WORD_DBFS = -22.0
NOISE_DBFS = -50.0
AFTER_WAKE_S = 0.35      # from the end of the wake phrase to the command
GAP_S = 2.0              # between a word (or a pair) and the next
NAME = "assistant_demo"


def _active(y):
    a, b, lo, hi = word_span(y)
    y = y[lo:hi]
    rms = np.sqrt(np.mean(np.square(y[a - lo:b - lo], dtype=np.float64))) + 1e-12
    return (y * (10 ** (WORD_DBFS / 20) / rms)).astype(np.float32), a - lo, b - lo


def wake_clip(eval_dir, voice, label="hey_hark"):
    """The first clip of `label` by `voice` in a `hark synth --voice-set holdout` folder."""
    paths = sorted(r["path"] for r in ds.voice_rows(eval_dir) or ()
                   if r["voice"] == voice and r["label"] == label and r["split"] == "holdout")
    if not paths:
        raise ds.DatasetError(f"{eval_dir}: no held-out {label} clip by {voice}; make them with "
                              f"`hark synth --words \"hey hark:200\" --voice-set holdout --seed 1`")
    return Path(eval_dir) / paths[0]


def build(data_dir, eval_dir, out_dir, seed=0):
    """Write out_dir/assistant_demo.wav and assistant_demo_events.json; return the events
    (label, start_s, end_s, target: fire for a pair's wake phrase and command, not for a command
    alone; source)."""
    words = [(SAMPLES / f"{name}.wav", False) for name in ALONE]
    for voice, command in PAIRS:
        words += [(wake_clip(eval_dir, voice), True), (SAMPLES / f"{command}.wav", True)]
    clips = [(_active(ds.read_audio(p)), p, target) for p, target in words]
    gaps = [int((AFTER_WAKE_S if p.parent.name == "hey_hark" else GAP_S) * RATE) for p, _ in words]
    total = int(GAP_S * RATE / 2) + sum(len(y) for (y, _, _), _, _ in clips) + sum(gaps)
    rng = np.random.default_rng(seed)
    bank = ds.load_noise(ds.load_dataset(data_dir, require_labels=False))
    noise = aug.noise_segment(bank, total, rng).astype(np.float64)
    noise -= noise.mean()
    out = (noise * 10 ** (NOISE_DBFS / 20) / (np.sqrt(np.mean(noise ** 2)) + 1e-12)).astype(np.float32)
    pos, events = int(GAP_S * RATE / 2), []
    for ((y, a, b), path, target), gap in zip(clips, gaps):
        out[pos:pos + len(y)] += y
        label = path.parent.name if path.parent.name == "hey_hark" else path.name.split("__")[0]
        events.append({"label": label, "word": label, "start_s": round((pos + a) / RATE, 3),
                       "end_s": round((pos + b) / RATE, 3), "target": target,
                       "source": path.name})
        pos += len(y) + gap
    out_dir = Path(out_dir)
    to_int16(out, out_dir / f"{NAME}.wav")
    (out_dir / f"{NAME}_events.json").write_text(json.dumps(events, indent=1))
    return events


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hark.training.assistant_demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="Speech Commands-layout folder (its noise)")
    p.add_argument("--eval", required=True, help="hark synth --voice-set holdout folder")
    p.add_argument("--out", default=str(SAMPLES / "assistant"))
    args = p.parse_args(argv)
    events = build(args.data, args.eval, args.out)
    print(f"wrote {args.out}/{NAME}.wav and {NAME}_events.json ({len(events)} words)")


if __name__ == "__main__":
    main()
