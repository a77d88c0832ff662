"""The wake word + command flow measured end to end through the firmware (`wake+command`
grammar: a command counts only within the blob's command window after the wake word).

Two kinds of stream (training/stream.py, words over background noise at 5-30 dB SNR):
- pairs: the wake phrase from `hark synth --voice-set holdout` (voices never trained on), then,
  0.2-0.6 s after it, a real command from the dataset's held-out lists (speakers never trained
  on); wake recall, command-after-wake recall (the right command fired within 1 s of its end)
  and the latency from the end of the command;
- negatives: real Speech Commands clips of every word, commands included, from the same lists,
  with no wake phrase (training/wake_eval.py negatives_stream), one stream per hour: every
  wake detection is a false wake, every command detection a false command.

Both kinds come in two parts that share no speaker and no clip: VALIDATION (the dataset's
validation list, wake phrases of --validation-eval: the held-out voices rendered with another
synth seed, other stream seeds), where the operating point is chosen, and TEST (the test list,
wake phrases of --eval), where it is reported. Each stream runs once through the firmware in
the MicroPython unix port (device front end, streaming int8 engine); its score rows then feed
one firmware Detector per (averaging window, wake threshold, command threshold) in the blob's
grammar (training/sweep.py), so one pass gives the whole DET curve.

The real lists hold almost no "on" or "off" (one each in the test list, none in validation), so
--command-eval adds one more pairs stream: the wake phrase, then a command from held-out
synthetic voices (`hark synth --words "on:200,off:200" --voice-set holdout`), reported at the
operating point and never used to choose it.

--near-misses adds a stream of what the wake phrase is likely to be mistaken for, from held-out
voices (`hark synth --near-misses PHRASE --voice-set holdout`: its words alone, its last word
with another onset: "hey park", "hey mark", ...), with no wake phrase and no command: how many
of those utterances wake the model, and which, at the operating point; never used to choose it.
--validation-near-misses plays another render of them (another synth seed) on the validation
part, reported there; --max-near-misses SHARE then keeps the operating point among the settings
where at most that share of them woke the model (a budget beside the two false-alarm ones).

At the operating point's wake setting, the commands may then get an averaging window of their
own (tune_command_window), and each command its own threshold below the point's
(tune_command_thresholds), both tuned on the validation part's stored score rows through the
same firmware detector and reported on the test part beside the point alone.
"""
import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import blob as blobfile
from . import dataset as ds
from . import sweep
from .report import num, pct
from .stream import (GAP_S, RATE, _noise_bed, _synth_unknown, compose_stream, place_word,
                     score_stream, to_int16)
from .wake_eval import PAD_MS, TOLERANCE_S, negatives_stream

THRESHOLDS = (0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 0.98)
COMMAND_THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8)
# one command's own threshold, below the operating point's: tune_command_thresholds
COMMAND_OWN_THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)
WINDOWS_MS = (300, 400, 500, 600, 700)     # 800 ms: no more commands (docs/wake.md)
# the commands' own averaging window after the wake word: tune_command_window
COMMAND_AVERAGES_MS = (400, 500, 600, 700, 800, 900, 1000, 1200)
TEST = ("test",)                # the real lists each part's commands and negatives come from
VALIDATION = ("validation",)
PAIR_GAP_S = (0.2, 0.6)         # from the end of the wake phrase to the start of the command
TARGET_FALSE_WAKES = 1.0        # per hour
TARGET_FALSE_COMMANDS = 0.5     # per hour
TARGET_RECALL = 0.9
TARGET_LATENCY_MS = 300


def grammar_of(meta: dict, model) -> dict:
    grammar = meta.get("grammar") or {}
    if grammar.get("mode") != "wake+command":
        from hark.cli import HarkError
        raise HarkError(f"{model}: not a wake word + commands model (its blob has no wake+command "
                        "grammar); train one with `hark train --wake PHRASE --commands ...`")
    return grammar


def assistant_board() -> dict:
    """The unix board profile with no grammar of its own: the blob's applies."""
    from hark import boards
    from hark.unixport import host_profile

    return dict(host_profile(boards.load("unix")), grammar=None)


def pairs_stream(wake_clips, command_clips, bank, seconds, seed, word_of=None, out_wav=None):
    """(int16 audio, events): wake phrase then command, pair after pair, over noise. Each event
    has label, word, start_s, end_s, snr_db, source, target (always) and kind (wake|command)."""
    if not wake_clips or not command_clips:
        raise ds.DatasetError("a pairs stream needs wake-phrase clips and command clips")
    rng = np.random.default_rng(seed)
    word_of = word_of or {}
    n = int(seconds * RATE)
    out, level = _noise_bed(n, rng, bank)
    cache, events = {}, []
    wakes, commands = rng.permutation(len(wake_clips)), rng.permutation(len(command_clips))
    cursor = rng.uniform(0.5, 1.5)
    k = 0
    while cursor + 3.0 < seconds:     # room for a pair
        pair = []
        for kind, path in (("wake", wake_clips[wakes[k % len(wakes)]]),
                           ("command", command_clips[commands[k % len(commands)]])):
            if path not in cache:
                cache[path] = ds.read_audio(path)
            event = place_word(out, level, cache[path], int(cursor * RATE), rng)
            cursor = event.pop("stop_s") + (rng.uniform(*PAIR_GAP_S) if kind == "wake" else 0)
            word = word_of.get(path, Path(path).parent.name)
            pair.append({"label": word, "word": word, **event, "target": True, "kind": kind,
                         "source": str(path)})
        events += pair
        cursor += rng.uniform(*GAP_S)
        k += 1
    return to_int16(out, out_wav), events


def score_pairs(detections, events, wake, seconds) -> dict:
    """Wake recall, command-after-wake recall and command latency of (time_s, label) detections."""
    wake_dets = [d for d in detections if d[1] == wake]
    command_dets = [d for d in detections if d[1] != wake]
    w = score_stream(wake_dets, [e for e in events if e["kind"] == "wake"], TOLERANCE_S, seconds)
    c = score_stream(command_dets, [e for e in events if e["kind"] == "command"], TOLERANCE_S,
                     seconds)
    return {"pairs": w["targets"], "wake_hits": w["hits"], "wake_recall": 1 - w["frr"],
            "command_hits": c["hits"], "command_recall": 1 - c["frr"],
            "command_recall_given_wake": c["hits"] / w["hits"] if w["hits"] else None,
            "wrong_commands": c["false_accepts"],
            "latency_ms_median": c["latency_ms_median"], "latency_ms_p90": c["latency_ms_p90"],
            "wake_latency_ms_median": w["latency_ms_median"]}


def count_negatives(detections, wake) -> tuple:
    """(false wakes, false commands) on a stream without the wake phrase."""
    wakes = sum(1 for _, label in detections if label == wake)
    return wakes, len(detections) - wakes


def settings_grid(windows=WINDOWS_MS, thresholds=THRESHOLDS, command_thresholds=COMMAND_THRESHOLDS):
    """(average window ms, wake threshold, command threshold) triples."""
    return [(int(w), float(t), float(c)) for w, t in sweep.settings_grid(windows, thresholds)
            for c in command_thresholds]


def within_budgets(figures, max_wakes=TARGET_FALSE_WAKES,
                   max_commands=TARGET_FALSE_COMMANDS) -> bool:
    """Whether a setting's figures (a part with negatives) keep both false-alarm budgets."""
    return (figures["false_wakes_per_hour"] <= max_wakes
            and figures["false_commands_per_hour"] <= max_commands)


def operating_point(rows, max_wakes=TARGET_FALSE_WAKES, max_commands=TARGET_FALSE_COMMANDS,
                    near_rows=None, max_near=None):
    """The row with the best command-after-wake recall among those within both false-alarm
    budgets (then the fewest false commands, then the highest threshold); None if none is.
    Given max_near, also within a near-miss budget: at most that share of the near misses
    (near_rows, the same settings in the same order) woke the model."""
    if max_near is not None:
        if near_rows is None or len(near_rows) != len(rows):
            raise ValueError("a near-miss budget needs one near-miss row per setting")
        rows = [r for r, n in zip(rows, near_rows) if n["woke"] <= max_near * n["utterances"]]
    ok = [r for r in rows if within_budgets(r, max_wakes, max_commands)]
    return max(ok, key=lambda r: (r["command_recall"], -r["false_commands_per_hour"],
                                  r["threshold"])) if ok else None


def measure_pairs(model, wake_clips, command_clips, word_of, bank, seconds, seed, board,
                  tmp) -> dict:
    """A pairs stream through the firmware once: its events and score rows (stored_figures
    scores them for every detector config; miss_reasons reads them)."""
    wav, rows = Path(tmp) / "stream.wav", Path(tmp) / "rows.bin"
    audio, events = pairs_stream(wake_clips, command_clips, bank, seconds, seed, word_of, wav)
    secs = len(audio) / RATE + PAD_MS / 1000
    output = sweep.firmware_scores(model, wav, rows, board, PAD_MS)
    scores = np.fromfile(rows, np.int8).reshape(-1, len(blobfile.read_blob(model)[0]["labels"]))
    return {"pair_events": events, "pair_scores": scores, "pair_seconds": secs, "output": output,
            "minutes": secs / 60}


def measure_part(model, d, bank, commands, wake_clips, splits, hours, pair_seconds, seed, board,
                 tmp, log=print, name="test") -> dict:
    """One part's pairs stream and `hours` of negatives through the firmware once: their
    events and score rows."""
    command_clips = [c.path for c in d.clips if c.word in commands and c.split in splits]
    part = measure_pairs(model, wake_clips, command_clips, {c.path: c.word for c in d.clips},
                         bank, pair_seconds, seed, board, tmp)
    log(f"{name} pairs stream: {part['minutes']:.1f} min, {len(part['pair_events']) // 2} pairs")
    wav, rows = Path(tmp) / "stream.wav", Path(tmp) / "rows.bin"
    neg_hours, neg_words, neg_scores = 0.0, 0, []
    for h in range(int(np.ceil(hours))):
        audio, events = negatives_stream(d.root, 3600 * min(1.0, hours - h), seed + 1 + h,
                                         splits, wav)
        secs = len(audio) / RATE + PAD_MS / 1000
        sweep.firmware_scores(model, wav, rows, board, PAD_MS)
        neg_scores.append(np.fromfile(rows, np.int8))
        neg_hours += secs / 3600
        neg_words += len(events)
        log(f"{name} negatives stream {h + 1}: {secs / 60:.1f} min, {len(events)} words")
    return {"splits": list(splits), "seed": seed, "negative_hours": neg_hours,
            "negative_words": neg_words, "pair_stream_minutes": pair_seconds / 60,
            "negative_scores": neg_scores, **part}


def setting_base(meta, blob_thresholds=False) -> dict:
    """The blob meta whose detector the settings modify. The grid's command threshold holds for
    every command, so a blob's own per-command thresholds (an earlier run's tuning) stay out of
    it and out of the tuning, unless blob_thresholds (the blob as shipped: hark bench)."""
    if blob_thresholds:
        return meta
    detector = {k: v for k, v in (meta.get("detector") or {}).items()
                if k != "command_average_ms"}     # the grid's window is the commands' too
    return dict(meta, detector=dict(detector, thresholds={}))


def detections(model, scores, configs, board, tmp) -> list:
    """The firmware Detector's detections of each config over stored score rows."""
    rows = Path(tmp) / "rows.bin"
    scores.tofile(rows)
    return sweep.detector_sweep(model, rows, configs, board)


def stored_figures(model, part, configs, wake, board, tmp) -> list:
    """The figures of detector `configs` over the score rows a part's streams left (the
    firmware Detector, no audio: seconds per config-hour): the pairs' (score_pairs) and, unless
    the part is a pairs stream only (--command-eval), the false wakes and commands."""
    out = [score_pairs(found, part["pair_events"], wake, part["pair_seconds"])
           for found in detections(model, part["pair_scores"], configs, board, tmp)]
    if "negative_scores" not in part:
        return out
    wakes, cmds = [0] * len(configs), [0] * len(configs)
    for scores in part["negative_scores"]:
        for i, found in enumerate(detections(model, scores, configs, board, tmp)):
            w, c = count_negatives(found, wake)
            wakes[i] += w
            cmds[i] += c
    h = part["negative_hours"]
    return [dict(r, false_wakes=w, false_commands=c, false_wakes_per_hour=w / h,
                 false_commands_per_hour=c / h) for r, w, c in zip(out, wakes, cmds)]


def setting_rows(settings, figures) -> list:
    """One row per (average window, wake threshold, command threshold) setting: its figures."""
    return [{"average_window_ms": w, "threshold": t, "command_threshold": c, **f}
            for (w, t, c), f in zip(settings, figures)]


def tune_command_window(model, part, meta, setting, wake, board, tmp, log=print) -> tuple:
    """The commands' own averaging window (the detector's command_average_ms) and command
    threshold at the operating point `setting`'s wake window and wake threshold, chosen on
    `part` (VALIDATION): the one that hears the most commands of all pairs within both
    false-alarm budgets, the point itself (one window for both) unless another hears more.
    Within a short window a wrong command that leads for a moment fires before the said one;
    a longer window lets the said one outweigh it. The wake setting stays, so the wake phrases
    heard stay too: a gain is commands heard, not a smaller denominator (docs/wake.md, "An
    800 ms window"). Returns (window ms, command threshold, its figures on part)."""
    window, wake_threshold, command_threshold = setting
    tries = [(w, t) for w in sorted({window, *COMMAND_AVERAGES_MS}) if w >= window
             for t in COMMAND_THRESHOLDS]
    configs = [dict(sweep.detector_config(meta, (window, wake_threshold, t), wake),
                    command_average_ms=w) for w, t in tries]
    figures = stored_figures(model, part, configs, wake, board, tmp)
    point = (window, command_threshold)
    f, (w, t) = max(((f, wt) for f, wt in zip(figures, tries) if within_budgets(f)),
                    key=lambda x: (x[0]["command_hits"], -x[0]["false_commands"],
                                   x[1] == point, -x[1][0], x[1][1]))
    log(f"validation: commands averaged over {w} ms at {t:.2f} hear {f['command_hits']} "
        f"commands")
    return w, t, f


def tune_command_thresholds(model, part, meta, setting, wake, commands, board, tmp,
                            log=print) -> tuple:
    """Per-command thresholds below the operating point's command threshold, chosen on `part`
    (VALIDATION): each round tries every command one of COMMAND_OWN_THRESHOLDS lower and keeps
    the change that hears the most commands of all pairs within both false-alarm budgets,
    until none hears more. Some commands are rarely fired in place of another (validation
    shows which): a lower threshold hears their weak real speakers. Thresholds only go down,
    so no command gets harder to say. Returns ({command: threshold}, the detector config with
    them, its figures on part)."""
    base = sweep.detector_config(meta, setting, wake)
    own = {}

    def config(thresholds):
        return dict(base, thresholds=dict(base["thresholds"], **thresholds))

    best = stored_figures(model, part, [config(own)], wake, board, tmp)[0]
    while True:
        tries = [(c, t) for c in commands for t in COMMAND_OWN_THRESHOLDS
                 if t < own.get(c, setting[2]) - 1e-9]
        if not tries:
            break
        figures = stored_figures(model, part, [config(dict(own, **{c: t})) for c, t in tries],
                                 wake, board, tmp)
        ok = [(f, ct) for f, ct in zip(figures, tries) if within_budgets(f)]
        if not ok:
            break
        f, (c, t) = max(ok, key=lambda x: (x[0]["command_hits"], -x[0]["false_commands"],
                                          x[1][1]))
        if f["command_hits"] <= best["command_hits"]:
            break
        own[c], best = t, f
        log(f"validation: {c} at {t:.2f} hears {f['command_hits']} commands")
    return own, config(own), best


def window_averages(scores, output, window_ms) -> np.ndarray:
    """Each label's score averaged over the trailing window at every row, as probabilities:
    what the firmware detector compares with its thresholds (it averages score units, q minus
    the zero point clamped to 0..255, over the rows inside its window)."""
    units = np.clip(scores.astype(np.int64) - output["zero_point"], 0, 255)
    k = max(1, int(window_ms) // output["period_ms"])
    sums = np.vstack([np.zeros((1, units.shape[1]), np.int64), np.cumsum(units, axis=0)])
    hi = np.arange(1, len(units) + 1)
    lo = np.maximum(0, hi - k)
    return (sums[hi] - sums[lo]) / (hi - lo)[:, None] * output["scale"]


def miss_reasons(part, found, labels, wake, setting, near=0.1) -> dict:
    """Why pairs are missed at one setting (average window, wake threshold, command
    threshold), from the firmware detector's detections and the window averages of the score
    rows (part: measure_part's, found: the setting's detections over its pairs). Missed wake
    phrases: their best average `near` the threshold or further below (or at
    it, under another label). Commands missed after a heard wake: a wrong command fired first
    (one per wake word), the right one's best average stayed under the threshold (near it or
    further), or it was over it but not fired (under another label in the average, or outside
    the command window: the grammar's timing)."""
    window, wake_thr, command_thr = setting
    avg = window_averages(part["pair_scores"], part["output"], window)
    t = np.arange(1, len(avg) + 1) * part["output"]["period_ms"] / 1000
    w = labels.index(wake)
    out = dict.fromkeys(("pairs", "wake_missed", "wake_near", "wake_far", "wake_masked",
                         "command_missed", "wrong_first", "command_near", "command_far",
                         "command_over_threshold_not_fired"), 0)
    events = part["pair_events"]
    for wake_event, command in zip(events[0::2], events[1::2]):
        out["pairs"] += 1
        end = wake_event["end_s"] + TOLERANCE_S
        heard = [s for s, label in found if label == wake and wake_event["start_s"] <= s <= end]
        if not heard:
            best = avg[(t >= wake_event["start_s"]) & (t <= end), w].max()
            out["wake_missed"] += 1
            out["wake_masked" if best >= wake_thr else
                "wake_near" if best >= wake_thr - near else "wake_far"] += 1
            continue
        end = command["end_s"] + TOLERANCE_S
        fired = [(s, label) for s, label in found if heard[0] < s <= end and label != wake]
        if any(label == command["label"] and s >= command["start_s"] for s, label in fired):
            continue
        out["command_missed"] += 1
        if fired:
            out["wrong_first"] += 1
            continue
        span = (t >= max(heard[0], command["start_s"])) & (t <= end)
        best = avg[span, labels.index(command["label"])].max() if span.any() else 0.0
        out["command_over_threshold_not_fired" if best >= command_thr else
            "command_near" if best >= command_thr - near else "command_far"] += 1
    return out


def _wake_clips(eval_dir, wake):
    clips = [p for p in _synth_unknown(eval_dir) if p.parent.name == wake]
    if not clips:
        raise ds.DatasetError(f"{eval_dir}: no {wake}/ clips from held-out voices; make them with "
                              f"`hark synth --words \"{wake.replace('_', ' ')}:200\" "
                              "--voice-set holdout --out DIR`")
    return clips


def near_miss_clips(folder, wake) -> list:
    """Held-out-voice clips of every phrase in folder but the wake phrase itself."""
    clips = [p for p in _synth_unknown(folder) if p.parent.name != wake]
    if not clips:
        raise ds.DatasetError(f"{folder}: no near misses of {wake} from held-out voices; make "
                              f"them with `hark synth --near-misses \"{wake.replace('_', ' ')}\" "
                              "--per-word 40 --voice-set holdout --out DIR`")
    return clips


# seconds of near-miss stream per clip: about each clip once (a word and a gap of GAP_S)
NEAR_MISS_SECONDS_PER_CLIP = 0.7 + sum(GAP_S) / 2


def measure_near_misses(model, clips, bank, seed, board, tmp) -> dict:
    """The near misses one after another over noise, through the firmware once: their events
    and score rows."""
    wav, rows = Path(tmp) / "stream.wav", Path(tmp) / "rows.bin"
    audio, events = compose_stream([], clips, bank, NEAR_MISS_SECONDS_PER_CLIP * len(clips), seed,
                                   0.0, out_wav=wav)
    output = sweep.firmware_scores(model, wav, rows, board, PAD_MS)
    scores = np.fromfile(rows, np.int8).reshape(-1, len(blobfile.read_blob(model)[0]["labels"]))
    return {"near_events": events, "near_scores": scores, "output": output, "seed": seed,
            "minutes": (len(audio) / RATE + PAD_MS / 1000) / 60}


def score_near_misses(detections, events, wake) -> dict:
    """False wakes and false commands on a near-miss stream, and per phrase how many of its
    utterances woke the model (a wake detection from the utterance's start to 1 s after its
    end, the pairs' tolerance)."""
    wakes = [t for t, label in detections if label == wake]
    phrases = {}
    for e in events:
        said = phrases.setdefault(e["word"], {"said": 0, "woke": 0})
        said["said"] += 1
        said["woke"] += any(e["start_s"] <= t <= e["end_s"] + TOLERANCE_S for t in wakes)
    return {"utterances": len(events), "woke": sum(p["woke"] for p in phrases.values()),
            "false_wakes": len(wakes), "false_commands": len(detections) - len(wakes),
            "phrases": phrases}


def near_miss_figures(model, part, configs, wake, board, tmp) -> list:
    """score_near_misses of each detector config over the near-miss stream's stored rows."""
    return [score_near_misses(found, part["near_events"], wake)
            for found in detections(model, part["near_scores"], configs, board, tmp)]


def evaluate(model, data_dir, eval_dir, out_dir, hours=3.0, pair_seconds=1500, seed=21,
             splits=TEST, settings=None, log=print, validation_eval=None, validation_hours=2.0,
             validation_seed=31, validation_splits=VALIDATION, command_eval=None,
             command_seed=41, tune_commands=True, blob_thresholds=False, near_misses=None,
             near_seed=51, validation_near_misses=None, validation_near_seed=52,
             max_near=None) -> dict:
    """The TEST part (wake phrases of eval_dir, real speech of `splits`) and, given
    validation_eval, the VALIDATION part through the firmware; the operating point is chosen
    on the validation rows and reported with the test row of the same setting. Given
    command_eval (held-out synthetic voices saying commands, e.g. on and off, of which the real
    lists hold almost none), one more pairs stream of those after the wake phrase, reported at
    the operating point and never used to choose it. tune_commands: then per-command thresholds
    below the operating point's, chosen on the validation rows too (tune_command_thresholds),
    and reported on the test part and that stream. Given near_misses (`hark synth --near-misses
    PHRASE --voice-set holdout`), one more stream of those alone: how many wake the model at each
    setting (near_miss_figures), never used to choose; given validation_near_misses (another
    synth seed), the same on the validation part, which max_near (a share of them) budgets
    when the operating point is chosen. blob_thresholds: keep the blob's own
    per-command thresholds in every setting (hark bench: the blob as shipped). Writes
    out_dir/assistant_eval.json, .md and the DET curves det_wake.png (wake threshold) and
    det_command.png (the whole flow) of the test part, and with near_misses det_near.png."""
    settings = settings or settings_grid()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta, _ = blobfile.read_blob(model)
    grammar = grammar_of(meta, model)
    grid_meta = setting_base(meta, blob_thresholds)
    wake = grammar["wake_word"]
    commands = [l for l in meta["labels"] if not l.startswith("_") and l != wake]
    d = ds.load_dataset(data_dir, require_labels=False)
    from hark.cli import HarkError
    if validation_eval is not None and set(splits) & set(validation_splits):
        raise HarkError(f"the test lists {'/'.join(splits)} and the validation lists "
                        f"{'/'.join(validation_splits)} overlap; give each part its own")
    if validation_near_misses is not None and validation_eval is None:
        raise HarkError("validation near misses need a validation part (--validation-eval)")
    for what, test_dir, val_dir in (("wake phrases", eval_dir, validation_eval),
                                    ("near misses", near_misses, validation_near_misses)):
        if None not in (test_dir, val_dir) and Path(val_dir).resolve() == Path(test_dir).resolve():
            raise HarkError(f"{test_dir}: the test and validation parts need their own {what}; "
                            "make the validation ones with another --seed of hark synth")
    if max_near is not None:
        if not 0 <= max_near <= 1:
            raise HarkError(f"--max-near-misses is a share of the near misses, 0 to 1; got "
                            f"{max_near}")
        if validation_near_misses is None:
            raise HarkError("a near-miss budget needs the validation part's near misses "
                            "(--validation-near-misses DIR: hark synth --near-misses PHRASE "
                            "--voice-set holdout with another --seed than the test part's)")
    if command_eval is not None:
        synthetic = [p for p in _synth_unknown(command_eval) if p.parent.name in commands]
        if not synthetic:
            raise ds.DatasetError(
                f"{command_eval}: no clips of the model's commands ({', '.join(commands)}) from "
                "held-out voices; make them with `hark synth --words \"on:200,off:200\" "
                "--voice-set holdout --out DIR`")
    near = near_miss_clips(near_misses, wake) if near_misses is not None else None
    near_val = (near_miss_clips(validation_near_misses, wake)
                if validation_near_misses is not None else None)
    board = assistant_board()
    configs = [sweep.detector_config(grid_meta, s, wake) for s in settings]
    bank = ds.load_noise(d)
    parts, extra = {}, None
    with tempfile.TemporaryDirectory(prefix="hark-assistant-") as tmp:
        if validation_eval is not None:
            parts["validation"] = measure_part(
                model, d, bank, commands, _wake_clips(validation_eval, wake), validation_splits,
                validation_hours, pair_seconds, validation_seed, board, tmp, log, "validation")
        parts["test"] = measure_part(model, d, bank, commands, _wake_clips(eval_dir, wake),
                                     splits, hours, pair_seconds, seed, board, tmp, log, "test")
        if command_eval is not None:
            wake_clips = _wake_clips(validation_eval or eval_dir, wake)
            extra = measure_pairs(model, wake_clips, synthetic, None, bank, pair_seconds,
                                  command_seed, board, tmp)
            log(f"synthetic commands pairs stream: {extra['minutes']:.1f} min, "
                f"{len(extra['pair_events']) // 2} pairs")
        def near_stream(clips, seed, name):
            if clips is None:
                return None, None
            part = measure_near_misses(model, clips, bank, seed, board, tmp)
            log(f"{name}: {part['minutes']:.1f} min, {len(part['near_events'])} utterances")
            return part, setting_rows(settings, near_miss_figures(model, part, configs, wake,
                                                                  board, tmp))
        near_part, near_rows = near_stream(near, near_seed, "near-miss stream")
        near_val_part, near_val_rows = near_stream(near_val, validation_near_seed,
                                                   "validation near-miss stream")
        rows = {name: setting_rows(settings, stored_figures(model, part, configs, wake, board,
                                                             tmp))
                for name, part in parts.items()}
        op, misses, tuned = None, None, None
        chosen = (operating_point(rows["validation"], near_rows=near_val_rows, max_near=max_near)
                  if "validation" in rows else None)
        if chosen is not None:
            i = rows["validation"].index(chosen)
            op = dict(rows["test"][i], validation=chosen)
            found = {name: detections(model, part["pair_scores"], [configs[i]], board, tmp)[0]
                     for name, part in parts.items()}
            misses = {name: miss_reasons(part, found[name], meta["labels"], wake, settings[i])
                      for name, part in parts.items()}
            if tune_commands:
                tuned = _tuned(model, parts, extra, near_part, grid_meta, settings[i], wake,
                               commands, board, tmp, log)
        if extra is not None:
            extra_rows = setting_rows(settings, stored_figures(model, extra, configs, wake, board,
                                                               tmp))
    test = parts["test"]
    result = {"model": os.path.relpath(model), "wake_word": wake, "commands": commands,
              "grammar": grammar, "data": os.path.relpath(data_dir),
              "eval": os.path.relpath(eval_dir), "splits": list(splits), "seed": seed,
              "negative_hours": test["negative_hours"], "negative_words": test["negative_words"],
              "pair_stream_minutes": pair_seconds / 60,
              "engine": "firmware (MicroPython unix port, streaming int8, firmware detector)",
              "detector": meta.get("detector"), "rows": rows["test"], "operating_point": op,
              "misses": misses, "command_thresholds": tuned}
    if "validation" in parts:
        v = parts["validation"]
        result["validation"] = {"eval": os.path.relpath(validation_eval), "splits": v["splits"],
                                "seed": v["seed"], "negative_hours": v["negative_hours"],
                                "negative_words": v["negative_words"], "rows": rows["validation"]}
        if near_val is not None:
            result["validation"]["near_misses"] = dict(
                _near_record(validation_near_misses, validation_near_seed, near_val_part,
                             near_val_rows), max_share=max_near)
    if command_eval is not None:
        result["synthetic_commands"] = {
            "eval": os.path.relpath(command_eval), "wake_eval": os.path.relpath(
                validation_eval or eval_dir), "seed": command_seed,
            "words": sorted({p.parent.name for p in synthetic}),
            "rows": extra_rows}
    if near is not None:
        result["near_misses"] = _near_record(near_misses, near_seed, near_part, near_rows)
    (out_dir / "assistant_eval.json").write_text(json.dumps(result, indent=1))
    (out_dir / "assistant_eval.md").write_text(table(result))
    plot(result, out_dir)
    return result


def _near_record(folder, seed, part, rows) -> dict:
    """A near-miss stream's entry in the result: where its clips came from and its rows."""
    return {"eval": os.path.relpath(folder), "seed": seed, "minutes": part["minutes"],
            "rows": rows}


def _tuned(model, parts, synthetic, near, meta, setting, wake, commands, board, tmp, log) -> dict:
    """The operating point with the commands' own window, then per-command thresholds, tuned
    on VALIDATION, measured on each stream's stored score rows through the firmware detector."""
    window, command_threshold, by_window = tune_command_window(
        model, parts["validation"], meta, setting, wake, board, tmp, log)
    meta = dict(meta, detector=dict(meta.get("detector") or {}, command_average_ms=window))
    setting = (setting[0], setting[1], command_threshold)
    own, config, validation = tune_command_thresholds(model, parts["validation"], meta, setting,
                                                      wake, commands, board, tmp, log)
    test_configs = [sweep.detector_config(meta, setting, wake), config]
    test_window, test = stored_figures(model, parts["test"], test_configs, wake, board, tmp)
    out = {"average_window_ms": setting[0], "threshold": setting[1],
           "command_average_ms": window, "command_threshold": command_threshold,
           "thresholds": own, "validation": validation, "test": test,
           "command_window": {"validation": by_window, "test": test_window}}
    if synthetic is not None:
        out["synthetic_commands"] = stored_figures(model, synthetic, [config], wake, board, tmp)[0]
    if near is not None:
        out["near_misses"] = near_miss_figures(model, near, [config], wake, board, tmp)[0]
    return out


MISSES = (("pairs", "pairs"), ("wake_missed", "wake phrases missed"),
          ("wake_far", "— best average more than 0.1 under the wake threshold"),
          ("wake_near", "— within 0.1 under it"),
          ("wake_masked", "— over it, under another label"),
          ("command_missed", "commands missed after a heard wake phrase"),
          ("wrong_first", "— another command fired first (one per wake word)"),
          ("command_far", "— best average more than 0.1 under the command threshold"),
          ("command_near", "— within 0.1 under it"),
          ("command_over_threshold_not_fired",
           "— over it, not fired (another label on top, or outside the command window)"))


def _latency(r) -> str:
    return f"{num(r['latency_ms_median'], '{:.0f}')} / {num(r['latency_ms_p90'], '{:.0f}')}"


def _figures(r) -> str:
    return (f"{pct(r['wake_recall'])} | {pct(r['command_recall'])} "
            f"({pct(r['command_recall_given_wake'])}) | {_latency(r)} | "
            f"{r['false_wakes_per_hour']:.2f} | {r['false_commands_per_hour']:.2f}")


def _parts_table(cols, validation, test) -> list:
    """The md lines of one setting's figures on the validation and the test part."""
    return ["| part |" + cols, "|---|---:|---:|---:|---:|---:|",
            f"| validation | {_figures(validation)} |", f"| test | {_figures(test)} |", ""]


def _part(name, part, pairs) -> str:
    return (f"{name}: {pairs} pairs of a held-out-voice wake phrase ({part['eval']}) and a real "
            f"held-out-speaker command, false alarms on {part['negative_hours']:.2f} h of real "
            f"speech ({part['negative_words']} words, no wake phrase), all from the "
            f"{'/'.join(part['splits'])} list{'s' if len(part['splits']) > 1 else ''}, stream "
            f"seed {part['seed']}")


def _near_misses(near, op, part="") -> str:
    """The near-miss stream at the operating point, phrase by phrase."""
    r = next(r for r in near["rows"] if all(r[k] == op[k] for k in (
        "average_window_ms", "threshold", "command_threshold")))
    each = ", ".join(f"{word.replace('_', ' ')} {p['woke']} of {p['said']}"
                     for word, p in sorted(r["phrases"].items(),
                                           key=lambda kv: (-kv[1]["woke"], kv[0])))
    return (f"{part}Near misses of the wake phrase from held-out voices ({near['eval']}; "
            f"{near['minutes']:.1f} min, {r['utterances']} utterances, no wake phrase, stream "
            f"seed {near['seed']}) at the operating point: {r['woke']} woke the model "
            f"({pct(r['woke'] / r['utterances'])}; {r['false_wakes']} false wakes, "
            f"{r['false_commands']} false commands): {each}.")


def table(result) -> str:
    val = result.get("validation")
    r0 = result["rows"][0]
    head = "| window ms | wake threshold | command threshold |"
    cols = " wake recall | command recall (of heard wakes) | median / p90 latency ms | false wakes / h | false commands / h |"
    lines = [f"Wake word `{result['wake_word']}` + {len(result['commands'])} commands "
             f"(`wake+command`, {result['grammar']['command_window_ms']} ms window); "
             f"{result['engine']}. " + _part("TEST", result, r0["pairs"]) + "." +
             (" " + _part("VALIDATION", val, val["rows"][0]["pairs"]) + "; no speaker, clip or "
              "stream in common with the test part." if val else "") +
             f" Command recall: the right command fired within {TOLERANCE_S:g} s of its end "
             "(in brackets: of the pairs whose wake phrase was heard).", ""]
    op = result["operating_point"]
    if val:
        budget = (val.get("near_misses") or {}).get("max_share")
        lines += [f"Operating point, chosen on VALIDATION (best command recall at <= "
                  f"{TARGET_FALSE_WAKES:g} false wakes/h and <= {TARGET_FALSE_COMMANDS:g} false "
                  "commands/h" + ("" if budget is None else f", <= {pct(budget)} of its near "
                  "misses waking it") + "): " + ("none" if not op else
                  f"window {op['average_window_ms']} ms, wake threshold {op['threshold']:.2f}, "
                  f"command threshold {op['command_threshold']:.2f}."), ""]
        if op:
            lines += _parts_table(cols, op["validation"], op)
            synthetic = result.get("synthetic_commands")
            if synthetic:
                i = [(r["average_window_ms"], r["threshold"], r["command_threshold"])
                     for r in result["rows"]].index(
                    (op["average_window_ms"], op["threshold"], op["command_threshold"]))
                r = synthetic["rows"][i]
                lines += [f"Held-out synthetic voices' {'/'.join(synthetic['words'])} "
                          f"({synthetic['eval']}) after the wake phrase ({synthetic['wake_eval']}), "
                          f"{r['pairs']} pairs, stream seed {synthetic['seed']}, at the operating "
                          f"point (the real lists hold almost none of these words): wake recall "
                          f"{pct(r['wake_recall'])}, command recall {pct(r['command_recall'])} "
                          f"({pct(r['command_recall_given_wake'])} of heard wakes), "
                          f"{r['wrong_commands']} wrong commands, median / p90 latency {_latency(r)} ms.", ""]
    # with near misses on both parts, each line says which part it is
    test_part = "TEST: " if val and val.get("near_misses") else ""
    if op and val and val.get("near_misses"):
        lines += [_near_misses(val["near_misses"], op["validation"], "VALIDATION: "), ""]
    tuned = result.get("command_thresholds")
    if tuned:
        own = ", ".join(f"{c} {t:.2f}" for c, t in sorted(tuned["thresholds"].items()))
        if op and result.get("near_misses"):
            lines += [_near_misses(result["near_misses"], op, test_part), ""]
        by_window = tuned.get("command_window")
        if by_window:
            lines += [f"Commands' own averaging window, chosen on VALIDATION at the operating "
                      "point's wake window and threshold (the most commands of all pairs within "
                      "both false-alarm budgets; the point's own window unless another hears "
                      f"more): {tuned['command_average_ms']} ms, command threshold "
                      f"{tuned['command_threshold']:.2f}.", ""]
            lines += _parts_table(cols, by_window["validation"], by_window["test"])
        lines += [f"Per-command thresholds, chosen on VALIDATION at the operating point"
                  f"{' and that window' if by_window else ''} (a command's "
                  f"own threshold only below {tuned['command_threshold']:.2f}, kept where it hears "
                  "more commands of all pairs within both false-alarm budgets): "
                  f"{own or 'none hears more'}.", ""]
        lines += _parts_table(cols, tuned["validation"], tuned["test"])
        r = tuned.get("synthetic_commands")
        if r:
            lines += [f"Held-out synthetic voices' commands after the wake phrase with these "
                      f"thresholds: wake recall {pct(r['wake_recall'])}, command recall "
                      f"{pct(r['command_recall'])} ({pct(r['command_recall_given_wake'])} of heard "
                      f"wakes), {r['wrong_commands']} wrong commands, median / p90 latency "
                      f"{_latency(r)} ms.", ""]
        r = tuned.get("near_misses")
        if r:
            lines += [f"Near misses with these thresholds: {r['false_wakes']} false wakes, "
                      f"{r['false_commands']} false commands.", ""]
    elif op and result.get("near_misses"):
        lines += [_near_misses(result["near_misses"], op, test_part), ""]
    misses = result.get("misses")
    if misses:
        lines += ["Why pairs are missed at the operating point (firmware detections; the "
                  "averages are the score rows' over the detector's window):", "",
                  "| | validation | test |", "|---|---:|---:|"]
        for key, what in MISSES:
            lines.append(f"| {what} | {misses['validation'][key]} | {misses['test'][key]} |")
        lines.append("")
    lines += ["Every setting, TEST part" + (" (validation figures in the JSON)" if val else "") + ":",
              "", head + cols, "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['average_window_ms']} | {r['threshold']:.2f} | "
                     f"{r['command_threshold']:.2f} | {_figures(r)} |")
    return "\n".join(lines) + "\n"


def plot(result, out_dir):
    hours = result["negative_hours"]
    op = result["operating_point"]
    for name, recall, fa, what, target in (
            ("det_wake.png", "wake_recall", "false_wakes_per_hour", "false wakes",
             TARGET_FALSE_WAKES),
            ("det_command.png", "command_recall", "false_commands_per_hour", "false commands",
             TARGET_FALSE_COMMANDS)):
        command_thr = op["command_threshold"] if op else result["rows"][0]["command_threshold"]
        rows = [dict(r, recall=r[recall], fa_per_hour=r[fa]) for r in result["rows"]
                if r["command_threshold"] == command_thr]
        chosen = dict(op, recall=op[recall], fa_per_hour=op[fa]) if op else None
        sweep.plot_det(rows, Path(out_dir) / name,
                       f"{result['wake_word']} + command: {what} vs wake threshold (points; "
                       f"commands at {command_thr:.2f})",
                       f"{what} per hour (real speech, test part, {hours:.1f} h)",
                       f"missed {'wake phrases' if recall == 'wake_recall' else 'commands'} %",
                       hours, target, TARGET_RECALL, chosen)
    near = result.get("near_misses")
    if near:    # the wake phrase missed against its near misses heard as it, per wake threshold
        command_thr = op["command_threshold"] if op else result["rows"][0]["command_threshold"]
        rows = [dict(r, recall=r["wake_recall"], fa_per_hour=100 * n["woke"] / n["utterances"])
                for r, n in zip(result["rows"], near["rows"])
                if r["command_threshold"] == command_thr]
        chosen = next((r for r in rows if op and all(r[k] == op[k] for k in (
            "average_window_ms", "threshold"))), None)
        sweep.plot_det(rows, Path(out_dir) / "det_near.png",
                       f"{result['wake_word']}: wake phrases missed vs near misses heard as it",
                       f"near misses that woke it, % ({near['eval']})",
                       "missed wake phrases % (test part)", 1, None, TARGET_RECALL, chosen,
                       log_x=False)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hark.training.assistant_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="wake word + commands model blob (hark export)")
    p.add_argument("--data", required=True, help="real Speech Commands-layout folder")
    p.add_argument("--eval", required=True,
                   help="hark synth --voice-set holdout folder with the phrase (test part)")
    p.add_argument("--validation-eval",
                   help="another such folder (another synth seed) for the validation part, where "
                        "the operating point is chosen; without it none is")
    p.add_argument("--out", required=True, help="folder for assistant_eval.json/.md, det_*.png")
    p.add_argument("--hours", type=float, default=3.0,
                   help="hours of real negatives, test part (default 3)")
    p.add_argument("--validation-hours", type=float, default=2.0,
                   help="hours of real negatives, validation part (default 2)")
    p.add_argument("--pair-seconds", type=float, default=1500, help="pairs stream length")
    p.add_argument("--windows", default=",".join(map(str, WINDOWS_MS)),
                   help="detector averaging windows in ms to try")
    p.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)),
                   help="wake thresholds to try")
    p.add_argument("--command-thresholds", default=",".join(map(str, COMMAND_THRESHOLDS)),
                   help="command thresholds to try (every setting costs time in each hop of the "
                        "detectors' replay)")
    p.add_argument("--command-eval",
                   help="a hark synth --voice-set holdout folder of command words the real lists "
                        "hold almost none of (e.g. on, off): one more pairs stream (after the "
                        "validation wake phrases), reported at the operating point, never used "
                        "to choose it")
    p.add_argument("--near-misses", metavar="DIR",
                   help="a hark synth --near-misses PHRASE --voice-set holdout folder: one more "
                        "stream of those alone, how many wake the model (reported, never used "
                        "to choose)")
    p.add_argument("--validation-near-misses", metavar="DIR",
                   help="the same from another synth --seed, played on the validation part: "
                        "reported there at every setting, and budgeted by --max-near-misses")
    p.add_argument("--max-near-misses", type=float, metavar="SHARE",
                   help="choose the operating point among the settings where at most this share "
                        "(0-1) of the validation near misses wake the model (default: no budget; "
                        "for 'hey hark' it costs wake recall steeply, docs/wake.md)")
    p.add_argument("--no-command-tuning", action="store_true",
                   help="skip the per-command thresholds tuned on the validation part after the "
                        "operating point (a few minutes)")
    p.add_argument("--seed", type=int, default=21)
    args = p.parse_args(argv)
    settings = settings_grid(*([float(x) for x in v.split(",")]
                               for v in (args.windows, args.thresholds, args.command_thresholds)))
    res = evaluate(args.model, args.data, args.eval, args.out, args.hours, args.pair_seconds,
                   args.seed, settings=settings, validation_eval=args.validation_eval,
                   validation_hours=args.validation_hours, command_eval=args.command_eval,
                   tune_commands=not args.no_command_tuning, near_misses=args.near_misses,
                   validation_near_misses=args.validation_near_misses,
                   max_near=args.max_near_misses)
    print(table(res))


if __name__ == "__main__":
    main()
