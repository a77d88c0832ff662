"""The wake word + command flow measured end to end through the firmware (`wake+command`
grammar: a command counts only within the blob's command window after the wake word).

Two kinds of stream (training/stream.py, words over background noise at 5-30 dB SNR):
- pairs: the wake phrase from `hark synth --voice-set holdout` (voices never trained on), then,
  0.2-0.6 s after it, a real command from the dataset's test and validation lists (speakers
  never trained on); wake recall, command-after-wake recall (the right command fired within
  1 s of its end) and the latency from the end of the command;
- negatives: real Speech Commands clips of every word, commands included, from the same lists,
  with no wake phrase (training/wake_eval.py negatives_stream), one stream per hour: every
  wake detection is a false wake, every command detection a false command.

Each stream runs once through the firmware in the MicroPython unix port (device front end,
streaming int8 engine); its score rows feed one firmware Detector per (averaging window,
wake threshold, command threshold) in the blob's grammar (training/sweep.py), so one pass
gives the whole DET curve.
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
from .stream import GAP_S, RATE, _noise_bed, _synth_unknown, place_word, score_stream, to_int16
from .wake_eval import PAD_MS, TOLERANCE_S, negatives_stream

THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9, 0.98)
COMMAND_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
WINDOWS_MS = (300, 400, 500)
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


def operating_point(rows, max_wakes=TARGET_FALSE_WAKES, max_commands=TARGET_FALSE_COMMANDS):
    """The row with the best command-after-wake recall among those within both false-alarm
    budgets (then the fewest false commands, then the highest threshold); None if none is."""
    ok = [r for r in rows if r["false_wakes_per_hour"] <= max_wakes
          and r["false_commands_per_hour"] <= max_commands]
    return max(ok, key=lambda r: (r["command_recall"], -r["false_commands_per_hour"],
                                  r["threshold"])) if ok else None


def evaluate(model, data_dir, eval_dir, out_dir, hours=3.0, pair_seconds=1500, seed=21,
             splits=("test", "validation"), settings=None, log=print) -> dict:
    """Both streams through the firmware; writes out_dir/assistant_eval.json, .md and the DET
    curves det_wake.png (wake threshold) and det_command.png (the whole flow)."""
    settings = settings or settings_grid()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta, _ = blobfile.read_blob(model)
    grammar = grammar_of(meta, model)
    wake = grammar["wake_word"]
    commands = [l for l in meta["labels"] if not l.startswith("_") and l != wake]
    d = ds.load_dataset(data_dir, require_labels=False)
    bank = ds.load_noise(d)
    wake_clips = [p for p in _synth_unknown(eval_dir) if p.parent.name == wake]
    if not wake_clips:
        raise ds.DatasetError(f"{eval_dir}: no {wake}/ clips from held-out voices; make them with "
                              f"`hark synth --words \"{wake.replace('_', ' ')}:200\" "
                              "--voice-set holdout --out DIR`")
    command_clips = [c.path for c in d.clips if c.word in commands and c.split in splits]
    board = assistant_board()

    def detections(wav):
        return sweep.firmware_sweep(model, wav, settings, board, wake, PAD_MS)

    with tempfile.TemporaryDirectory(prefix="hark-assistant-") as tmp:
        wav = Path(tmp) / "stream.wav"
        audio, events = pairs_stream(wake_clips, command_clips, bank, pair_seconds, seed,
                                     {c.path: c.word for c in d.clips}, wav)
        secs = len(audio) / RATE + PAD_MS / 1000
        pairs = [score_pairs(found, events, wake, secs) for found in detections(wav)]
        log(f"pairs stream: {secs / 60:.1f} min, {pairs[0]['pairs']} pairs")
        negatives, neg_hours, neg_words = [], 0.0, 0
        for h in range(int(np.ceil(hours))):
            audio, events = negatives_stream(data_dir, 3600 * min(1.0, hours - h), seed + 1 + h,
                                             splits, wav)
            secs = len(audio) / RATE + PAD_MS / 1000
            negatives.append([count_negatives(found, wake) for found in detections(wav)])
            neg_hours += secs / 3600
            neg_words += len(events)
            log(f"negatives stream {h + 1}: {secs / 60:.1f} min, {len(events)} words, "
                f"false wakes/commands {[n for n in negatives[-1]]}")
    rows = []
    for i, (window, thr, command_thr) in enumerate(settings):
        wakes = sum(hour[i][0] for hour in negatives)
        cmds = sum(hour[i][1] for hour in negatives)
        rows.append({"average_window_ms": window, "threshold": thr,
                     "command_threshold": command_thr, **pairs[i],
                     "false_wakes": wakes, "false_commands": cmds,
                     "false_wakes_per_hour": wakes / neg_hours,
                     "false_commands_per_hour": cmds / neg_hours})
    result = {"model": os.path.relpath(model), "wake_word": wake, "commands": commands,
              "grammar": grammar, "data": os.path.relpath(data_dir),
              "eval": os.path.relpath(eval_dir), "splits": list(splits), "seed": seed,
              "negative_hours": neg_hours, "negative_words": neg_words,
              "pair_stream_minutes": pair_seconds / 60,
              "engine": "firmware (MicroPython unix port, streaming int8, firmware detector)",
              "detector": meta.get("detector"), "rows": rows, "operating_point": operating_point(rows)}
    (out_dir / "assistant_eval.json").write_text(json.dumps(result, indent=1))
    (out_dir / "assistant_eval.md").write_text(table(result))
    plot(result, out_dir)
    return result


def _pct(x):
    return "—" if x is None else f"{100 * x:.1f}%"


def _ms(x):
    return "—" if x is None else f"{x:.0f}"


def table(result) -> str:
    r0 = result["rows"][0]
    lines = [f"Wake word `{result['wake_word']}` + {len(result['commands'])} commands "
             f"(`wake+command`, {result['grammar']['command_window_ms']} ms window): "
             f"{r0['pairs']} pairs of a held-out-voice wake phrase and a real held-out-speaker "
             f"command; false alarms on {result['negative_hours']:.2f} h of real speech "
             f"({result['negative_words']} words, {'/'.join(result['splits'])} lists, no wake "
             f"phrase); {result['engine']}. Command recall: the right command fired within "
             f"{TOLERANCE_S:g} s of its end (in brackets: of the pairs whose wake phrase was "
             "heard).", "",
             "| window ms | wake threshold | command threshold | wake recall | command recall | "
             "median / p90 latency ms | false wakes / h | false commands / h |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lat = f"{_ms(r['latency_ms_median'])} / {_ms(r['latency_ms_p90'])}"
        lines.append(f"| {r['average_window_ms']} | {r['threshold']:.2f} | "
                     f"{r['command_threshold']:.2f} | {_pct(r['wake_recall'])} | "
                     f"{_pct(r['command_recall'])} ({_pct(r['command_recall_given_wake'])}) | "
                     f"{lat} | {r['false_wakes_per_hour']:.2f} | "
                     f"{r['false_commands_per_hour']:.2f} |")
    op = result["operating_point"]
    lines += ["", f"Operating point (best command recall at <= {TARGET_FALSE_WAKES:g} false "
              f"wakes/h and <= {TARGET_FALSE_COMMANDS:g} false commands/h): " +
              (f"window {op['average_window_ms']} ms, wake threshold {op['threshold']:.2f}, "
               f"command threshold {op['command_threshold']:.2f}: wake "
               f"recall {_pct(op['wake_recall'])}, command recall {_pct(op['command_recall'])}, "
               f"median latency {_ms(op['latency_ms_median'])} ms, "
               f"{op['false_wakes_per_hour']:.2f} false wakes/h, "
               f"{op['false_commands_per_hour']:.2f} false commands/h" if op else "none")]
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
                       f"{what} per hour (real speech, {hours:.1f} h)",
                       f"missed {'wake phrases' if recall == 'wake_recall' else 'commands'} %",
                       hours, target, TARGET_RECALL, chosen)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hark.training.assistant_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="wake word + commands model blob (hark export)")
    p.add_argument("--data", required=True, help="real Speech Commands-layout folder")
    p.add_argument("--eval", required=True, help="hark synth --voice-set holdout folder with the phrase")
    p.add_argument("--out", required=True, help="folder for assistant_eval.json/.md, det_*.png")
    p.add_argument("--hours", type=float, default=3.0, help="hours of real negatives (default 3)")
    p.add_argument("--pair-seconds", type=float, default=1500, help="pairs stream length")
    p.add_argument("--windows", default=",".join(map(str, WINDOWS_MS)),
                   help="detector averaging windows in ms to try")
    p.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)),
                   help="wake thresholds to try")
    p.add_argument("--command-thresholds", default=",".join(map(str, COMMAND_THRESHOLDS)),
                   help="command thresholds to try (every setting costs time in each hop)")
    p.add_argument("--seed", type=int, default=21)
    args = p.parse_args(argv)
    settings = settings_grid(*([float(x) for x in v.split(",")]
                               for v in (args.windows, args.thresholds, args.command_thresholds)))
    res = evaluate(args.model, args.data, args.eval, args.out, args.hours, args.pair_seconds,
                   args.seed, settings=settings)
    print(table(res))


if __name__ == "__main__":
    main()
