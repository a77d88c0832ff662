"""Long test streams with known word times, and how to score a detector on them.

A stream is background noise (the dataset's `_background_noise_` recordings, one stretch
after another at levels from near-silent to loud) with words laid over it one at a time:
command words from the dataset's test and validation lists (speakers the model never trained
on) as targets, and non-command speech as distractors. Everything comes from one seed.

The held-out lists are small (about 100 clips per plentiful command, 2 for "on" and "off"),
so a long stream reuses clips; every placement draws its own level and, sometimes, reverb,
and `events` marks reused placements. Distractors are the dataset's non-command words from
every split (too few otherwise: the model did see the training ones, as `_unknown_`, so the
false-accept rate on them is optimistic) plus, when present, synthetic unknown words from
voices held out of training (voices.csv split != train).
"""
from pathlib import Path

import numpy as np

from . import augment as aug
from . import dataset as ds
from . import sweep
from .report import num
from .rooms import MEASUREMENT_SEED, impulse_responses, in_room

RATE = ds.SAMPLE_RATE
DEFAULT_UNKNOWN_DIR = Path(__file__).resolve().parents[1] / "data" / "synth" / "unknown"
NOISE_DBFS = (-65.0, -25.0)      # RMS level of each noise stretch, log-uniform
NOISE_STRETCH_S = (5.0, 20.0)
SNR_DB = (5.0, 30.0)             # word RMS over the local noise RMS
MIN_WORD_DBFS = -40.0            # a word never drops below this RMS, even in near silence
GAP_S = (1.5, 3.5)               # between the end of one word and the start of the next
MARGIN_S = 0.1                   # audio kept around a word's active part
REVERB_PROB = 0.3


def _rms_db(y):
    return 20 * np.log10(np.sqrt(np.mean(np.square(y, dtype=np.float64))) + 1e-12)


def _synth_unknown(unknown_dir):
    """Synthetic unknown-word clips from voices held out of training (all, without voices.csv)."""
    root = Path(unknown_dir)
    if not root.is_dir():
        return []
    rows = ds.voice_rows(root)
    if rows is not None:
        return [root / r["path"] for r in rows
                if r.get("split", "train") != "train" and (root / r["path"]).exists()]
    return sorted(root.rglob("*.wav"))


def _noise_bed(n, rng, bank):
    """Noise stretches at random levels, joined with 50 ms cross-fades."""
    out = np.zeros(n, np.float32)
    level = np.zeros(n, np.float32)
    fade = RATE // 20
    pos = 0
    while pos < n:
        length = min(n - pos, int(rng.uniform(*NOISE_STRETCH_S) * RATE) + fade)
        seg = aug.noise_segment(bank, length, rng).astype(np.float32)
        seg = seg - seg.mean()
        target = 10 ** (rng.uniform(*NOISE_DBFS) / 20)
        seg *= target / (np.sqrt(np.mean(seg.astype(np.float64) ** 2)) + 1e-12)
        ramp = np.ones(length, np.float32)
        k = min(fade, length)
        if pos:
            ramp[:k] = np.linspace(0, 1, k, dtype=np.float32)
        if pos + length < n:
            ramp[-k:] = np.linspace(1, 0, k, dtype=np.float32)
        out[pos:pos + length] += seg * ramp
        level[pos:pos + length] = np.maximum(level[pos:pos + length], target)
        pos += length - fade if pos + length < n else length
    return out, level


def make_stream(data_dir, seconds: float, seed: int, commands=tuple(ds.COMMANDS),
                target_share: float = 0.6, splits=("test", "validation"),
                unknown_dir=DEFAULT_UNKNOWN_DIR, out_wav=None, progress=None, rooms=0):
    """(int16 audio at 16 kHz, events) for a stream of `seconds`; with rooms=N every word is
    heard 1-3 m away in one of N simulated rooms (none a training room: rooms.impulse_responses
    with MEASUREMENT_SEED).

    events: one dict per placed word, in time order: label (the model label: the command, or
    `_unknown_` for distractors), word, start_s/end_s (the word's active part), target
    (a command placed to be detected), reused (the clip was placed before), snr_db (word RMS
    over the local noise RMS), source (path).
    Writes a 16-bit WAV to out_wav when given.
    """
    d = ds.load_dataset(data_dir)
    targets = [c.path for c in d.clips if c.word in commands and c.split in splits]
    distractors = [c.path for c in d.clips if c.label == ds.UNKNOWN and c.word not in commands]
    distractors += _synth_unknown(unknown_dir) if unknown_dir else []
    if not targets:
        raise ds.DatasetError(f"{data_dir}: no clips of {list(commands)} in the {'/'.join(splits)} "
                              "lists to use as targets")
    rirs = impulse_responses(rooms, MEASUREMENT_SEED) if rooms else ()
    return compose_stream(targets, distractors, ds.load_noise(d), seconds, seed, target_share,
                          {c.path: c.word for c in d.clips}, out_wav, progress, rirs)


def word_span(y):
    """(a, b, lo, hi): the active part of clip y in samples (augment.active_region) and the part
    a stream takes, MARGIN_S around it."""
    a, b = aug.active_region(y)
    return a, b, max(0, a - int(MARGIN_S * RATE)), min(len(y), b + int(MARGIN_S * RATE))


def to_int16(out, out_wav=None) -> np.ndarray:
    """The mixed float stream as int16 samples, also written to out_wav (16-bit WAV) if given."""
    audio = np.clip(np.round(out * 32767), -32768, 32767).astype(np.int16)
    if out_wav is not None:
        import soundfile as sf
        Path(out_wav).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out_wav), audio, RATE, subtype="PCM_16")
    return audio


def place_word(out, level, y, start, rng, span=None, rirs=()) -> dict:
    """Mix clip y (its active part and MARGIN_S around it; span: word_span(y) if the caller has
    it) into `out` at sample `start`, with a random SNR over the local noise `level` and
    sometimes reverb, or always in one of the rooms `rirs` (rooms.impulse_responses) if given.
    Returns start_s/end_s (the active part), snr_db and stop_s (where the placed audio ends)."""
    a, b, lo, hi = span or word_span(y)
    y = y[lo:hi].astype(np.float32)
    if len(rirs):
        y = in_room(y, rirs[rng.integers(len(rirs))])
    elif rng.random() < REVERB_PROB:
        y = aug.reverb(y, rng, rng.uniform(0.1, 0.5))
    local = float(level[start:start + len(y)].max())
    word_db = max(20 * np.log10(local + 1e-12) + rng.uniform(*SNR_DB), MIN_WORD_DBFS)
    y = y * 10 ** ((word_db - _rms_db(y[a - lo:b - lo])) / 20)
    peak = np.max(np.abs(y))
    if peak > 0.9:
        y *= 0.9 / peak
    out[start:start + len(y)] += y
    snr = _rms_db(y[a - lo:b - lo]) - 20 * np.log10(local + 1e-12)
    return {"start_s": round((start + a - lo) / RATE, 3), "end_s": round((start + b - lo) / RATE, 3),
            "snr_db": round(float(snr), 1), "stop_s": (start + len(y)) / RATE}


def compose_stream(targets, distractors, bank, seconds: float, seed: int,
                   target_share: float = 0.6, word_of=None, out_wav=None, progress=None, rirs=()):
    """make_stream from lists of clip paths: `targets` (labelled by their word: word_of[path],
    else the folder name) are placed with probability target_share, `distractors` (labelled
    `_unknown_`) otherwise, over stretches of the noise recordings in `bank`, each word in one
    of the rooms `rirs` if given. Either list may be empty, not both: no targets makes a stream
    for counting false accepts alone."""
    if not targets and not distractors:
        raise ds.DatasetError("a stream needs target or distractor clips")
    rng = np.random.default_rng(seed)
    word_of = word_of or {}
    n = int(seconds * RATE)
    if bank:
        out, level = _noise_bed(n, rng, bank)
    else:  # faint hiss so levels still mean something
        level = np.full(n, 10 ** (NOISE_DBFS[0] / 20), np.float32)
        out = (rng.standard_normal(n) * level).astype(np.float32)

    cache, used, events = {}, set(), []
    order = [list(rng.permutation(len(targets))), list(rng.permutation(max(1, len(distractors))))]
    cursor = rng.uniform(0.5, 1.5)
    bar = progress(total=int(seconds), desc="stream", unit="s") if progress else None
    while True:
        is_target = not distractors or (bool(targets) and rng.random() < target_share)
        pool, k = (targets, 0) if is_target else (distractors, 1)
        if not order[k]:
            order[k] = list(rng.permutation(len(pool)))
        path = pool[order[k].pop()]
        if path not in cache:
            cache[path] = ds.read_audio(path)
        y = cache[path]
        span = word_span(y)
        start = int(cursor * RATE)
        if start + (span[3] - span[2]) >= n:
            break
        word = word_of.get(path, Path(path).parent.name)
        event = place_word(out, level, y, start, rng, span, rirs)
        stop = event.pop("stop_s")
        events.append({"label": word if is_target else ds.UNKNOWN, "word": word, **event,
                       "target": is_target, "reused": path in used, "source": str(path)})
        used.add(path)
        cursor = stop + rng.uniform(*GAP_S)
        if bar is not None:
            bar.update(min(int(cursor), int(seconds)) - bar.n)
    if bar is not None:
        bar.close()
    return to_int16(out, out_wav), events


SNR_BANDS = ("<10", "10-20", ">=20", "unknown")


def _snr_band(snr):
    if snr is None:
        return "unknown"
    return "<10" if snr < 10 else "10-20" if snr < 20 else ">=20"


def _det(d):
    """(time_s, label) from a unixport.Detection, a dict or a pair."""
    if isinstance(d, dict):
        return float(d["time_s"]), d["label"]
    if isinstance(d, (tuple, list)):
        return float(d[0]), d[1]
    return float(d.time_s), d.label


def score_stream(detections, events, tolerance: float = 1.0, seconds: float = None) -> dict:
    """False rejects and false accepts of detections against a stream's events.

    A detection of a target event's label at a time within [start_s, end_s + tolerance]
    hits it (once; latency = detection time - end_s); every other detection is a false
    accept (`substitutions`: the wrong label during a word, including distractors;
    `spurious`: outside any word). seconds: the stream length (default: the last event's
    end + tolerance) for the per-hour rate.
    """
    dets = sorted(_det(d) for d in detections)
    targets = [e for e in events if e["target"]]
    hit = [False] * len(targets)
    latencies, false_accepts, substitutions = [], 0, 0
    for t, label in dets:
        match = next((i for i, e in enumerate(targets) if not hit[i] and e["label"] == label
                      and e["start_s"] <= t <= e["end_s"] + tolerance), None)
        if match is not None:
            hit[match] = True
            latencies.append(1000 * (t - targets[match]["end_s"]))
            continue
        false_accepts += 1
        substitutions += any(e["start_s"] <= t <= e["end_s"] + tolerance for e in events)
    if seconds is None:
        seconds = (max(e["end_s"] for e in events) + tolerance) if events else 0.0
    hours = seconds / 3600
    per_label = {}
    per_snr = {}
    for e, h in zip(targets, hit):
        for table, key in ((per_label, e["label"]), (per_snr, _snr_band(e.get("snr_db")))):
            p = table.setdefault(key, {"n": 0, "hits": 0})
            p["n"] += 1
            p["hits"] += h
    for p in list(per_label.values()) + list(per_snr.values()):
        p["recall"] = p["hits"] / p["n"]
    lat = np.asarray(latencies, np.float64)
    return {
        "targets": len(targets), "hits": int(sum(hit)), "misses": len(targets) - int(sum(hit)),
        "frr": (1 - sum(hit) / len(targets)) if targets else None,
        "false_accepts": false_accepts, "substitutions": substitutions,
        "spurious": false_accepts - substitutions,
        "distractors": sum(not e["target"] for e in events),
        "hours": hours, "fa_per_hour": false_accepts / hours if hours else None,
        "latency_ms_median": float(np.median(lat)) if len(lat) else None,
        "latency_ms_p90": float(np.percentile(lat, 90)) if len(lat) else None,
        "per_label": dict(sorted(per_label.items())),
        "per_snr_db": {k: per_snr[k] for k in SNR_BANDS if k in per_snr}, "tolerance_s": tolerance,
    }


TARGET_FA_PER_HOUR = 0.5
TARGET_RECALL = 0.95
THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.825, 0.85, 0.875, 0.9, 0.95)
WINDOWS_MS = (300, 500, 750, 1000)


def sweep_stream(model, wav, events, seconds, settings, board) -> list:
    """One row per (averaging window, threshold): the stream's score with that detector
    (every setting from a single firmware pass, training/sweep.py)."""
    rows = []
    for (window, thr), found in zip(settings, sweep.firmware_sweep(model, wav, settings, board)):
        s = score_stream(found, events, seconds=seconds)
        rows.append({"average_window_ms": window, "threshold": thr, "recall": 1 - s["frr"],
                     **{k: s[k] for k in ("hits", "targets", "false_accepts", "fa_per_hour",
                                          "latency_ms_median", "latency_ms_p90")}})
    return rows


def det_table(rows, hours) -> str:
    lines = [f"| window ms | threshold | detected | FA / hour ({hours:.2f} h) | median latency ms |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lat = num(r["latency_ms_median"], "{:.0f}")
        lines.append(f"| {r['average_window_ms']} | {r['threshold']:g} | "
                     f"{100 * r['recall']:.1f}% ({r['hits']}/{r['targets']}) | "
                     f"{r['fa_per_hour']:.1f} | {lat} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """`python -m hark.training.stream`: a long stream through the firmware, scored; with
    --sweep, every (averaging window, threshold) pair of the detector from the same pass."""
    import argparse
    import json
    import tempfile

    from hark import boards
    from hark.unixport import host_profile, run_firmware

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--data", required=True, help="Speech Commands-layout folder")
    p.add_argument("--model", help="model blob (not needed with --keep)")
    p.add_argument("--seconds", type=float, default=3600.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--splits", default="test,validation",
                   help="lists the command words come from (default test,validation)")
    p.add_argument("--board", default="unix")
    p.add_argument("--rooms", type=int, default=0, metavar="N",
                   help="every word heard 1-3 m away in one of N simulated rooms (RT60 "
                        "0.2-0.7 s; no training room), e.g. 200: a board across a room")
    p.add_argument("--keep", metavar="DIR",
                   help="write the stream to DIR/stream.wav and its word times to "
                        "DIR/stream_events.json (for `hark simulate --events`) and stop")
    p.add_argument("--sweep", metavar="DIR",
                   help="write DIR/stream_det.json, det.md and det.png: FRR, false accepts/h "
                        "and latency for a grid of averaging windows and thresholds")
    args = p.parse_args(argv)
    if not args.keep and not args.model:
        p.error("--model is required (unless --keep only writes the stream)")
    board = boards.load(args.board)
    if args.keep:
        keep = Path(args.keep)
        keep.mkdir(parents=True, exist_ok=True)
        audio, events = make_stream(args.data, args.seconds, args.seed, out_wav=keep / "stream.wav",
                                    splits=tuple(args.splits.split(",")), rooms=args.rooms)
        (keep / "stream_events.json").write_text(json.dumps(events, indent=1))
        print(f"wrote {keep / 'stream.wav'} ({len(audio) / RATE / 3600:.2f} h) and "
              f"{keep / 'stream_events.json'} ({len(events)} words)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        wav = f"{tmp}/stream.wav"
        audio, events = make_stream(args.data, args.seconds, args.seed, out_wav=wav,
                                    splits=tuple(args.splits.split(",")), rooms=args.rooms)
        seconds = len(audio) / RATE
        if args.sweep:
            rows = sweep_stream(args.model, wav, events, seconds,
                                sweep.settings_grid(WINDOWS_MS, THRESHOLDS), host_profile(board))
        else:
            run = run_firmware(args.model, board, wav=wav, stats=True, heapcheck=True, heapsize="4M")
    if args.sweep:
        out = Path(args.sweep)
        out.mkdir(parents=True, exist_ok=True)
        hours = seconds / 3600
        (out / "stream_det.json").write_text(json.dumps(
            {"model": str(args.model), "seconds": seconds, "seed": args.seed,
             "splits": args.splits, "rows": rows}, indent=1))
        (out / "det.md").write_text(det_table(rows, hours))
        sweep.plot_det(rows, out / "det.png", f"{Path(args.model).stem}: commands in a {hours:.1f} h "
                 "stream, through the firmware", f"false accepts per hour ({hours:.1f} h)",
                 "missed commands %", hours, TARGET_FA_PER_HOUR, TARGET_RECALL)
        print(det_table(rows, hours))
        return 0
    score = score_stream(run.detections, events, seconds=seconds)
    print(json.dumps({"score": {k: v for k, v in score.items()
                                if not isinstance(v, (list, dict))}, "firmware": run.stats},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
