"""`hark bench`: every published number of the shipped models, measured in one run.

For each model in models/ (default, esp32, wide, dscnn, tiny_conv when present):
- accuracy on the dev test list: the float Keras model (models/<name>.keras when present),
  int8 in TFLite Micro with librosa features, and int8 with the device's integer front end
  (its numpy model, bit-exact with the firmware); per-class recall;
- size and cost from the blob: params, bytes, arena, MACs per inference and per second;
- the real firmware in the MicroPython unix port on a generated long stream (training/stream.py):
  µs per 20 ms hop per stage, real-time factor, peak heap, and FRR / false accepts per hour;
- ratios against the default model, and per-board time estimates from MACs x the profile's
  cycles_per_mac_viper / clock_hz (an estimate, not a measurement);
- 32-bit figures from QEMU's Cortex-M4F with the pyboard profile (tools/qemu.py): smallest heap,
  live heap, instructions per hop per stage, beside `hark deploy`'s RAM estimate (--quick: the
  default model only; a windowed model takes minutes there);
- the wake word + commands model (models/assistant.hark) end to end through the firmware
  (training/assistant_eval.py) at the blob's own detector settings: wake recall,
  command-after-wake recall and latency on held-out-voice "hey hark" + real command pairs,
  false wakes and false commands per hour of real speech, its DET curve over the wake
  threshold, and its QEMU figures (a full run only: it needs `make synth`'s wake_eval voices).
Results go to OUT/results.json and OUT/results.md, and into README.md between the bench markers.
"""
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from hark import REPO

from . import blob as blobfile
from . import evaluate, nonspeech, report, stream
from .dataset import COMMANDS, SILENCE, UNKNOWN
from .report import num, pct

MODEL_NAMES = ("default", "esp32", "wide", "dscnn", "tiny_conv")
ASSISTANT = "assistant"
ASSISTANT_HOURS = 1.0            # real speech with no wake phrase, for false wakes/commands
ASSISTANT_PAIR_SECONDS = 600     # wake phrase + command pairs
WAKE_EVAL = REPO / "data" / "synth" / "wake_eval"   # held-out voices' wake phrases (make synth)
SCARCE = ("on", "off", UNKNOWN, SILENCE)
PLENTIFUL = [c for c in COMMANDS if c not in SCARCE]
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
QUICK = {"max_per_word": 3, "stream_seconds": 45}
FULL = {"max_per_word": 0, "stream_seconds": 600}
TOLERANCE_S = 1.0
PAD_MS = 1000
STREAMING_CHECK_S = 6            # seconds of the stream for the streaming vs windowed check
QEMU_BOARD = "pyboard"
QEMU_CLIP = "yes__0ab3b47d_nohash_0.wav"    # in samples/


def machine_info() -> dict:
    """What the numbers were measured on."""
    from hark.unixport import micropython_binary

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mp = subprocess.run([micropython_binary(), "-c",
                         "import sys; print(sys.version.split('; ')[-1])"],
                        capture_output=True, text=True)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg_start": list(os.getloadavg()),
            "python": platform.python_version(), "micropython": mp.stdout.strip(),
            "platform": platform.platform(), "git_commit": commit,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def shipped_models(models_dir) -> list:
    return [Path(models_dir) / f"{n}.hark" for n in MODEL_NAMES
            if (Path(models_dir) / f"{n}.hark").exists()]


def static_numbers(path: Path, meta: dict) -> dict:
    m = meta["model"]
    hop_ms = 1000 * meta["features"]["hop_length"] // meta["features"]["sample_rate"]
    every = int((meta.get("detector") or {}).get("infer_every", 1))
    tflite = path.with_suffix(".tflite")
    return {"name": meta.get("name"), "family": meta.get("family"), "blob_bytes": path.stat().st_size,
            "tflite_bytes": tflite.stat().st_size if tflite.exists() else None,
            "params": m.get("params"), "weight_bytes": m.get("weight_bytes"),
            "arena_bytes": m.get("arena_bytes"), "macs_per_window": m.get("macs"),
            "macs_per_inference": m.get("macs"), "streaming": False,
            "hop_ms": hop_ms, "infer_every": every,
            "macs_per_second": m["macs"] * 1000 // (hop_ms * every) if m.get("macs") else None}


def training_summary(path: Path):
    """Recipe and reported accuracies from the training metrics shipped beside the model
    (models/<name>.train.json or <name>.json), when present."""
    for candidate in (path.with_suffix(".train.json"), path.with_suffix(".json")):
        if candidate.exists():
            d = json.loads(candidate.read_text())
            cfg = d.get("config") or {}
            metrics = d.get("metrics") or {}
            return {"file": candidate.name,
                    "recipe": {k: cfg[k] for k in ("family", "width", "epochs", "synth", "real_share",
                                                   "synth_ratio", "seed") if k in cfg},
                    "reported_accuracy": {k: v.get("accuracy") for k, v in metrics.items()
                                          if isinstance(v, dict) and "accuracy" in v}}
    return None


def _summary(metrics: dict) -> dict:
    pc = metrics["per_class"]
    plentiful = [pc[c]["recall"] for c in PLENTIFUL if pc.get(c, {}).get("recall") is not None]
    return {"accuracy": metrics["accuracy"], "n": metrics["n"],
            "recall_commands_mean": float(np.mean(plentiful)) if plentiful else None,
            "recall": {k: v["recall"] for k, v in pc.items()}, "n_per_class": {k: v["n"] for k, v in pc.items()},
            "confusion": metrics["confusion"], "labels": metrics["labels"]}


def float_predictions(keras_path: Path, audio, meta: dict) -> np.ndarray:
    import keras

    from .features import FeatureSpec, Normalisation, batch_features
    spec = FeatureSpec.from_dict(meta["features"])
    norm = Normalisation.from_dict(meta["features"]["normalisation"])
    model = keras.models.load_model(keras_path, compile=False)
    return model.predict(norm.apply(batch_features(audio, spec)), verbose=0, batch_size=256)


def accuracy(path: Path, meta: dict, arrays: dict, clips) -> dict:
    """float / int8 librosa / int8 device metrics on the same clips."""
    from .convert import run_tflm
    audio, targets, _ = clips
    labels = meta["labels"]
    out = {}
    keras_path = path.with_suffix(".keras")
    if keras_path.exists():
        out["float"] = _summary(report.classification_metrics(
            targets, float_predictions(keras_path, audio, meta).argmax(axis=1), labels))
    tflite = path.with_suffix(".tflite").read_bytes()
    y_ref = run_tflm(tflite, evaluate.reference_int8(audio, meta)).argmax(axis=1)
    y_dev = run_tflm(tflite, evaluate.device_int8(audio, meta, arrays)).argmax(axis=1)
    out["int8_librosa"] = _summary(report.classification_metrics(targets, y_ref, labels))
    out["int8_device"] = _summary(report.classification_metrics(targets, y_dev, labels))
    out["device_minus_librosa_points"] = 100 * (out["int8_device"]["accuracy"]
                                                - out["int8_librosa"]["accuracy"])
    out["device_librosa_agreement"] = float(np.mean(y_ref == y_dev))
    return out


def firmware_run(path: Path, wav: Path, events, seconds: float, board: dict) -> dict:
    """The firmware in the unix port over the stream: timing, heap, detections, FRR/FA."""
    from hark.unixport import run_firmware
    run = run_firmware(path, board, wav=wav, pad_ms=PAD_MS, stats=True)
    s = run.stats
    hop_us = 1000 * s["audio_ms"] / max(1, s["frames"])
    unix = {"frames": s["frames"], "inferences": s["inferences"], "streaming": bool(s.get("streaming")),
            "us_per_hop": {k.split(".", 1)[1]: v for k, v in s.items() if k.startswith("us_per_hop.")},
            "us_per_inference": s.get("us_per_inference"),
            "heap_peak": s["heap_peak"], "heap_live": s["heap_live"], "heap_total": s["heap_total"]}
    unix["real_time_factor"] = unix["us_per_hop"]["total"] / hop_us
    return {"unixport": unix,
            "stream": stream.score_stream(run.detections, events, TOLERANCE_S, seconds + PAD_MS / 1000),
            "detections": [[d.time_s, d.label, d.score] for d in run.detections]}


def as_streamed(r: dict, path: Path, audio: np.ndarray) -> None:
    """For a model the firmware runs incrementally: the MACs one hop really costs, measured with
    the windowed engine side by side on the first seconds of the stream (streaming_vs_windowed),
    replace the full-window figures in r["static"]."""
    every = r["static"]["infer_every"]
    sv = streaming_vs_windowed(path, audio[:STREAMING_CHECK_S * stream.RATE], every=every)
    r["streaming_vs_windowed"] = {k: sv[k] for k in ("hops", "every", "identical_outputs",
                                                      "mac_ratio", "time_ratio_mean", "streaming",
                                                      "windowed")}
    per_s = sv["streaming"]["macs_per_second"]
    r["static"].update(streaming=True, macs_per_second=per_s,
                       macs_per_inference=per_s * every * r["static"]["hop_ms"] // 1000)


def board_estimates(static: dict, unix: dict, boards_list) -> dict:
    """Per board: model time from MACs x cycles_per_mac_viper / clock; the front end scaled from
    the unix port by the same per-MAC speed ratio (a rough guess, labelled as such)."""
    out = {}
    macs = static["macs_per_inference"]
    ns_per_mac_unix = (1000 * unix["us_per_inference"] / macs) if unix and macs and unix.get("us_per_inference") else None
    for b in boards_list:
        cpm, clock = b.get("cycles_per_mac_viper"), b.get("clock_hz")
        if not cpm or not clock or not macs:
            continue
        ns_per_mac = 1e9 * cpm / clock
        infer_ms = macs * ns_per_mac / 1e6
        per_hop_ms = infer_ms / static["infer_every"]
        fe_ms = (unix["us_per_hop"]["frontend"] / 1000 * ns_per_mac / ns_per_mac_unix
                 if ns_per_mac_unix else None)
        total = per_hop_ms + (fe_ms or 0)
        out[b["name"]] = {
            "mcu": b.get("mcu"), "clock_hz": clock, "cycles_per_mac_viper": cpm,
            "est_ms_per_inference": infer_ms, "est_model_ms_per_hop": per_hop_ms,
            "est_frontend_ms_per_hop_scaled": fe_ms, "est_real_time_factor": total / static["hop_ms"],
            "ram_budget_bytes": b.get("ram_budget_bytes"),
            "blob_fits_flash": static["blob_bytes"] <= b.get("flash_budget_bytes", 0)}
    return out


def runs_in_heap(path: Path, board: dict, heap: int, seconds: float = 2.0) -> bool:
    """Whether the firmware loads the model and runs `seconds` of audio with `-X heapsize=heap`
    in the 64-bit unix port: its objects are bigger than a 32-bit board's, but it keeps viper
    machine code outside the heap (stm32 and rp2 load it into theirs): docs/runtime.md."""
    from hark.cli import HarkError
    from hark.unixport import run_firmware
    try:
        run_firmware(path, board, pcm=bytes(2 * int(seconds * stream.RATE)), heapsize=heap, timeout=120)
        return True
    except HarkError as exc:
        if "out of memory" not in str(exc):
            raise
        return False


def min_heap(path: Path, board: dict, lo: int = 16_000, hi: int = 2_000_000, step: int = 250):
    """Smallest heap (bisection to `step` bytes) runs_in_heap; None when even `hi` is not enough.
    Fragmentation makes success not quite monotonic in the heap size, so a board's fit is
    measured at its own budget (runs_in_heap), not read off this number."""
    if not runs_in_heap(path, board, hi):
        return None
    while hi - lo > step:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs_in_heap(path, board, mid) else (mid, hi)
    return hi


def qemu_figures(path: Path) -> dict:
    """tools/qemu.py's measurement on QEMU_CLIP with the QEMU_BOARD profile (I2S buffer included),
    beside `hark deploy`'s RAM estimate for it and that estimate's error; {"skipped": why}
    without QEMU."""
    import tempfile

    from hark import SAMPLES_DIR, boards, deploy, qemu
    reason = qemu.missing()
    if reason:
        return {"skipped": reason}
    board = boards.load(QEMU_BOARD)
    with tempfile.TemporaryDirectory() as tmp:
        estimate = deploy.fit_report(board, path, deploy.build(board, build_dir=Path(tmp))).ram_needed
    r = qemu.measure(path, board, SAMPLES_DIR / QEMU_CLIP)
    r["deploy_estimate"] = estimate
    r["estimate_error"] = estimate / r["min_heap_free_at_start"] - 1
    return r


def qemu_markdown(models: dict) -> list:
    rows = {n: r["qemu"] for n, r in models.items() if r.get("qemu") and "skipped" not in r["qemu"]}
    skipped = {r["qemu"]["skipped"] for r in models.values() if "skipped" in (r.get("qemu") or {})}
    if not rows:
        return ["", f"**32-bit (QEMU)**: not measured ({'; '.join(skipped) or 'no model'})."]
    lines = ["", f"**32-bit: QEMU Cortex-M4F** (`tools/qemu.py`, MicroPython's qemu port on mps2-an386: "
             f"the pyboard's core and ISA, firmware as armv7emsp .mpy loaded into the GC heap as on a "
             f"board; {QEMU_BOARD} profile with its I2S buffer allocated; samples/{QEMU_CLIP} + 1 s of "
             "silence). Smallest heap: the least `--heap` that starts and gives the same detections "
             "(64-byte steps); free at start: what main.py then finds free, the figure to compare with "
             "a board's free heap at its REPL (pyboard: 93,632 B) and with `hark deploy`'s estimate. "
             "Instructions are exact (`-icount`); QEMU models no cycles, caches or flash wait states.", "",
             "| model | smallest heap B | free at start B | `hark deploy` estimate B (error) | live heap B | "
             "free at start within the budget | instructions / hop | front end | inference | detector | "
             "start-up M instr. |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for name, q in rows.items():
        st = q["insns_per_hop_stage"]
        infer = st.get("infer", 0) + st.get("window", 0)
        lines.append(f"| {name} | {q['min_heap']:,} | {q['min_heap_free_at_start']:,} | "
                     f"{q['deploy_estimate']:,} ({100 * q['estimate_error']:+.1f}%) | {q['heap_live']:,} | "
                     f"{'yes' if q['fits_budget'] else 'no'} ({q['budget']:,}) | {q['insns_per_hop']:,} | "
                     f"{st.get('frontend', 0):,} | {infer:,} | {st.get('detect', 0):,} | "
                     f"{q['insns_startup'] / 1e6:.1f} |")
    return lines


def assistant_figures(path: Path, data_dir, eval_dir, out_dir, hours=ASSISTANT_HOURS,
                      pair_seconds=ASSISTANT_PAIR_SECONDS, seed=21, with_qemu=True) -> dict:
    """The assistant flow at the settings the blob ships (its averaging window and command
    threshold) over the wake thresholds of assistant_eval, so the bench draws the DET curve and
    reports the shipped point; {"skipped": why} without held-out wake phrases."""
    from . import assistant_eval

    meta, _ = blobfile.read_blob(path)
    wake = assistant_eval.grammar_of(meta, path)["wake_word"]
    det = meta["detector"]
    shipped = (int(det["average_window_ms"]), float(det.get("thresholds", {}).get(wake, det["threshold"])),
               float(det["threshold"]))
    if not any(p.is_dir() for p in Path(eval_dir).glob(wake)):
        return {"skipped": f"no {eval_dir}/{wake}/ (held-out voices' wake phrases): run `make synth`"}
    wake_thresholds = sorted(set(assistant_eval.THRESHOLDS) | {shipped[1]})
    settings = [(shipped[0], t, shipped[2]) for t in wake_thresholds]
    near = Path(eval_dir).parent / f"near_{wake}"       # make synth's near misses, if made
    res = assistant_eval.evaluate(path, data_dir, eval_dir, out_dir, hours, pair_seconds, seed,
                                  settings=settings, log=lambda _: None, blob_thresholds=True,
                                  near_misses=near if near.is_dir() else None)
    row = res["rows"][settings.index(shipped)]
    if "near_misses" in res:        # one row per wake threshold, as the rows above
        for r, n in zip(res["rows"], res["near_misses"]["rows"]):
            r["near_misses_woke"], r["near_misses"] = n["woke"], n["utterances"]
    own = {k: v for k, v in (det.get("thresholds") or {}).items() if k != wake}
    out = {"shipped_setting": dict(zip(("average_window_ms", "wake_threshold", "command_threshold"),
                                       shipped), command_thresholds=own,
                                   command_average_ms=int(det.get("command_average_ms",
                                                                  shipped[0]))),
           "negative_hours": res["negative_hours"], "negative_words": res["negative_words"],
           "splits": res["splits"], "wake_word": wake, "commands": res["commands"], "rows": res["rows"],
           **{k: row[k] for k in ("pairs", "wake_recall", "command_recall", "command_recall_given_wake",
                                  "latency_ms_median", "latency_ms_p90", "false_wakes_per_hour",
                                  "false_commands_per_hour")},
           "det_wake_png": str(Path(out_dir) / "det_wake.png")}
    if with_qemu:
        out["qemu"] = qemu_figures(path)
    return out


def assistant_markdown(a: dict) -> list:
    from .assistant_eval import (TARGET_FALSE_COMMANDS, TARGET_FALSE_WAKES, TARGET_LATENCY_MS,
                                 TARGET_RECALL)
    if not a:
        return []
    if "skipped" in a or "error" in a:
        return ["", f"**Wake word + commands** (models/{ASSISTANT}.hark): not measured "
                f"({a.get('skipped') or a.get('error')})."]
    s = a["shipped_setting"]
    lines = ["", f"**Wake word + commands** (models/{ASSISTANT}.hark, `{a['wake_word']}` then one of "
             f"{len(a['commands'])} commands, the blob's `wake+command` grammar and detector: window "
             f"{s['average_window_ms']} ms" + (
                 f" (the commands' {s['command_average_ms']} ms)"
                 if s.get("command_average_ms", s["average_window_ms"]) != s["average_window_ms"]
                 else "") + f", wake threshold {s['wake_threshold']:.2f}, command threshold "
             f"{s['command_threshold']:.2f}" + "".join(
                 f", {c} {t:.2f}" for c, t in sorted(s.get("command_thresholds", {}).items())) +
             "; training/assistant_eval.py through the firmware in the unix "
             f"port). {a['pairs']} pairs of a held-out-voice wake phrase and a real held-out-speaker "
             f"command; false alarms over {a['negative_hours']:.2f} h of real speech ({a['negative_words']} "
             f"words of the {'/'.join(a.get('splits', ['test', 'validation']))} list, noise 5-30 dB "
             "SNR, no wake phrase). Targets: "
             f"recall ≥ {100 * TARGET_RECALL:.0f} %, ≤ {TARGET_FALSE_WAKES:g} false wakes/h, "
             f"≤ {TARGET_FALSE_COMMANDS:g} false commands/h, median latency ≤ {TARGET_LATENCY_MS} ms. "
             "The whole DET curve over the wake threshold: det_wake.png in the bench folder; the 3 h, "
             "three-seed figures: README \"Wake word + commands\".", "",
             "| wake threshold | wake recall | command after wake | of the wakes heard | median / p90 latency ms | false wakes / h | false commands / h | near misses that woke it |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in a["rows"]:
        mark = " (shipped)" if r["threshold"] == s["wake_threshold"] else ""
        near = (f"{r['near_misses_woke']} of {r['near_misses']}" if "near_misses" in r else
                "— (no data/synth/near_*: `make synth`)")
        lines.append(f"| {r['threshold']:.2f}{mark} | {pct(r['wake_recall'])} | {pct(r['command_recall'])} | "
                     f"{pct(r['command_recall_given_wake'])} | {num(r['latency_ms_median'], '{:.0f}')} / "
                     f"{num(r['latency_ms_p90'], '{:.0f}')} | {r['false_wakes_per_hour']:.2f} | "
                     f"{r['false_commands_per_hour']:.2f} | {near} |")
    return lines


def ratios(results: dict, base: str = "default") -> None:
    """Side-by-side ratios of each model to the base model, written into results in place."""
    b = results.get(base)
    if not b:
        return

    def acc_per_mmac(r):
        acc = (r.get("accuracy") or {}).get("int8_device", {}).get("accuracy")
        macs = r["static"]["macs_per_second"]
        return acc / (macs / 1e6) if acc is not None and macs else None

    def hop(r):
        return ((r.get("unixport") or {}).get("us_per_hop") or {}).get("total")

    def div(x, y):
        return x / y if x is not None and y else None

    for r in results.values():
        r["vs_default"] = {
            "accuracy_per_mmac": acc_per_mmac(r), "accuracy_per_mmac_x": div(acc_per_mmac(r), acc_per_mmac(b)),
            "macs_x": div(r["static"]["macs_per_second"], b["static"]["macs_per_second"]),
            "blob_bytes_x": div(r["static"]["blob_bytes"], b["static"]["blob_bytes"]),
            "us_per_hop_x": div(hop(r), hop(b))}


def to_markdown(res: dict) -> str:
    m, cfg, st = res["machine"], res["config"], res["stream"]
    models = res["models"]
    acc_n = next((r["accuracy"]["int8_librosa"]["n"] for r in models.values() if r.get("accuracy")), 0)
    lines = [f"Measured by `hark bench{' --quick' if cfg['quick'] else ''}` on {m['date_utc']} "
             f"(git {m['git_commit']}): {m['cpu']}, {m['cores']} cores (load average "
             f"{m['load_avg_start'][0]:.1f} at start: shared machine, timings are upper bounds), "
             f"Python {m['python']}, MicroPython {m['micropython']}.", "",
             f"**Accuracy** on the dev test list ({acc_n} clips incl. `_silence_` cut from the noise "
             "files; held-out speakers). int8 runs in TFLite Micro; \"device\" feeds it the "
             "firmware's integer front end. Recall columns are int8 + device features (what the "
             "board runs); on/off have only one test clip each here, so their recall is 0 or 100%.", "",
             "| model | float | int8 librosa | int8 device | device − librosa | 8 commands | on | off | _unknown_ | _silence_ |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in models.items():
        a = r.get("accuracy")
        if not a:
            lines.append(f"| {name} | error: {r['errors'].get('accuracy', '?')} |||||||||")
            continue
        d = a["int8_device"]
        rec = d["recall"]
        lines.append(f"| {name} | {pct(a.get('float', {}).get('accuracy'))} | "
                     f"{pct(a['int8_librosa']['accuracy'])} | {pct(d['accuracy'])} | "
                     f"{a['device_minus_librosa_points']:+.1f} pt | {pct(d['recall_commands_mean'])} | "
                     + " | ".join(f"{pct(rec.get(k), 0)} (n={d['n_per_class'].get(k, 0)})" for k in SCARCE) + " |")
    for name, r in models.items():
        t = r.get("training")
        if t:
            recipe = ", ".join(f"{k} {v}" for k, v in t["recipe"].items())
            lines.append(f"\n`{name}` training ({t['file']}): {recipe}.")
    lines += ["", "**Cost.** Bytes, params, arena and MACs from the blob; µs per 20 ms hop, real-time "
              "factor (compute time / audio time) and peak heap from the firmware (mpy-cross x64, "
              "`--stats`) in the MicroPython unix port over the stream below; min heap: the smallest "
              "`-X heapsize` it loads and runs in (bisection, 250 B steps). A streaming model (firmware/streaming.py: "
              "one new column per layer each hop) costs far fewer MACs per inference than its 1 s window; "
              "its MACs as run are counted by the firmware (streaming_vs_windowed).", "",
              "| model | params | blob bytes | arena bytes | MACs / 1 s window | MACs / inference as run | MACs / s audio | front end µs/hop | inference µs/hop | total µs/hop | RTF | ns / MAC | peak heap | min heap |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in models.items():
        s, u = r["static"], r.get("unixport") or {}
        h = u.get("us_per_hop") or {}
        nsmac = (1000 * u["us_per_inference"] / s["macs_per_inference"]
                 if u.get("us_per_inference") and s["macs_per_inference"] else None)
        lines.append(f"| {name} | {num(s['params'])} | {num(s['blob_bytes'])} | {num(s['arena_bytes'])} | "
                     f"{num(s['macs_per_window'])} | {num(s['macs_per_inference'])}{' (streaming)' if s['streaming'] else ''} | "
                     f"{num(s['macs_per_second'])} | {num(h.get('frontend'))} | "
                     f"{num(h.get('infer'))} | {num(h.get('total'))} | {num(u.get('real_time_factor'), '{:.3f}')} | "
                     f"{num(nsmac, '{:.2f}')} | {num(u.get('heap_peak'))} | {num(r.get('min_heap_bytes'))} |")
    lines += ["", f"**Long stream** ({st['seconds'] / 60:.1f} min, seed {cfg['seed']}: "
              f"{st['targets']} command words from the test/validation lists, {st['reused_targets']} "
              f"of them reused clips with new level/reverb, {st['distractors']} non-command words, "
              "background noise from near-silent to loud) through the firmware, board profile `unix` "
              f"detector defaults. A detection of the right word within {TOLERANCE_S:.0f} s after its "
              "end is a hit; anything else is a false accept. Latency = detection − word end.", "",
              "| model | FRR | hits / targets | false accepts | of which during a word | FA / hour | median latency ms | recall at SNR < 10 / 10–20 / ≥ 20 dB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in models.items():
        s = r.get("stream")
        if not s:
            lines.append(f"| {name} | error: {r['errors'].get('firmware', '?')} ||||||")
            continue
        lines.append(f"| {name} | {pct(s['frr'])} | {s['hits']} / {s['targets']} | {s['false_accepts']} | "
                     f"{s['substitutions']} | {num(s['fa_per_hour'], '{:.1f}')} | "
                     f"{num(s['latency_ms_median'], '{:.0f}')} | "
                     + " / ".join(pct((s.get("per_snr_db") or {}).get(k, {}).get("recall"), 0)
                                  for k in ("<10", "10-20", ">=20")) + " |")
    quiet = {n: r["non_speech"] for n, r in models.items() if r.get("non_speech")}
    if quiet:
        names = list(next(iter(quiet.values())))
        lines += ["", "**Non-speech input** (3 s each through the firmware, same detector; "
                  "training/nonspeech.py): detections, which should all be none. A DC step is what "
                  "a microphone with an offset gives when audio starts.", "",
                  "| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for n, q in quiet.items():
            lines.append(f"| {n} | " + " | ".join(", ".join(q.get(k, [])) or "none" for k in names) + " |")
    sv = {n: r["streaming_vs_windowed"] for n, r in models.items() if r.get("streaming_vs_windowed")}
    if sv:
        lines += ["", f"**Streaming vs windowed** (same model, same front-end frames, first "
                  f"{STREAMING_CHECK_S} s of the stream, unix port):", "",
                  "| model | outputs identical | MACs / hop streaming | MACs / hop windowed | × fewer MACs | µs / hop streaming | µs / hop windowed |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for n, v in sv.items():
            lines.append(f"| {n} | {'yes' if v['identical_outputs'] else 'NO'} | "
                         f"{v['streaming']['macs_per_hop']:,} | {v['windowed']['macs_per_hop']:,} | "
                         f"{v['mac_ratio']:.1f} | {v['streaming']['us_per_hop_mean']} | "
                         f"{v['windowed']['us_per_hop_mean']} |")
    lines += ["", "**Against the default model** (×: this model's value / the default's; accuracy is int8 + device "
              "features; MACs are per second of audio as the firmware runs the model).", "",
              "| model | accuracy per M MACs/s | × accuracy per MAC | × MACs | × blob bytes | × µs per hop |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, r in models.items():
        v = r.get("vs_default") or {}
        lines.append(f"| {name} | {num(v.get('accuracy_per_mmac'), '{:.3f}')} | "
                     + " | ".join(num(v.get(k), "{:.2f}") for k in
                                  ("accuracy_per_mmac_x", "macs_x", "blob_bytes_x", "us_per_hop_x")) + " |")
    lines += ["", "**Board estimates** (not measured on hardware): model time = MACs × "
              "`cycles_per_mac_viper` ÷ `clock_hz` from `boards/<board>.json` (63 instructions per MAC "
              "for viper, measured under QEMU on Cortex-M3/M7 in the shared REFERENCE.md, ~1 "
              "instruction per cycle; Xtensa and Cortex-M0+ unmeasured); front end scaled from the unix "
              "port by the same per-MAC speed ratio. RTF over 1 means the board cannot keep up running "
              "the model every hop. The last column runs the firmware with the board's RAM budget as its "
              "heap in the 64-bit unix port: does the model load and run? An approximation, not a bound: "
              "objects are bigger there than on a 32-bit board, but the viper machine code (in the "
              "heap on stm32 and rp2, in IRAM on esp32) and the I2S buffer are not in it; "
              "`hark deploy` adds those up (docs/runtime.md).", "",
              "| model | board | MHz | est. ms / inference | est. front end ms / hop | est. RTF | RAM budget | runs in the budget (unix port) |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, r in models.items():
        for bname, e in (r.get("boards") or {}).items():
            fits = e.get("fits_ram_budget_unix_measure")
            lines.append(f"| {name} | {bname} | {e['clock_hz'] // 1_000_000} | {e['est_ms_per_inference']:.1f} | "
                         f"{num(e['est_frontend_ms_per_hop_scaled'], '{:.2f}')} | {e['est_real_time_factor']:.2f} | "
                         f"{num(e['ram_budget_bytes'])} | "
                         f"{'—' if fits is None else 'yes' if fits else 'no'} |")
    assistant = res.get("assistant") or {}
    lines += qemu_markdown({**models, **({ASSISTANT: assistant} if assistant.get("qemu") else {})})
    lines += assistant_markdown(assistant)
    errors = {n: r["errors"] for n, r in models.items() if r["errors"]}
    if errors:
        lines += ["", "**Errors**: " + "; ".join(f"{n} {k}: {v}" for n, e in errors.items() for k, v in e.items())]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, markdown: str) -> bool:
    """Replace the text between the bench markers; False when the README lacks them."""
    if not readme or not Path(readme).exists():
        return False
    text = Path(readme).read_text()
    a, b = text.find(README_START), text.find(README_END)
    if a < 0 or b < a:
        return False
    Path(readme).write_text(text[:a + len(README_START)] + "\n\n" + markdown + "\n" + text[b:])
    return True


def run_bench(data_dir, out_dir, models_dir, quick=False, seed=7, stream_seconds=None,
              readme=None, board="unix", progress=True, wake_eval=None) -> dict:
    """The whole bench; returns the results dict written to out_dir/results.json."""
    from tqdm import tqdm

    from hark import boards as boardlib
    from hark.cli import HarkError

    paths = shipped_models(models_dir)
    if not paths:
        raise HarkError(f"no models in {models_dir} (looked for {', '.join(MODEL_NAMES)}.hark); "
                        "export one with `hark export`")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = dict(QUICK if quick else FULL)
    if stream_seconds:
        cfg["stream_seconds"] = stream_seconds
    bar = (lambda it=None, **kw: tqdm(it, leave=False, **kw)) if progress else None
    res = {"machine": machine_info(),
           "config": {"quick": quick, "data": str(data_dir), "seed": seed, "tolerance_s": TOLERANCE_S,
                      "board": board, **cfg}, "models": {}}
    wav = out_dir / "stream.wav"
    audio, events = stream.make_stream(data_dir, cfg["stream_seconds"], seed, out_wav=wav, progress=bar)
    targets = [e for e in events if e["target"]]
    res["stream"] = {"seconds": len(audio) / stream.RATE, "wav": str(wav), "targets": len(targets),
                     "reused_targets": sum(e["reused"] for e in targets),
                     "distractors": len(events) - len(targets),
                     "distractor_words": sorted({e["word"] for e in events if not e["target"]})}
    (out_dir / "stream_events.json").write_text(json.dumps(events, indent=1))
    (out_dir / "tmp").mkdir(parents=True, exist_ok=True)
    quiet_wavs = nonspeech.write_signals(out_dir / "tmp")     # once, for every model
    profile = boardlib.load(board)
    all_boards = [boardlib.load(n) for n in boardlib.available()]
    clips_by_labels = {}
    steps = tqdm(total=3 * len(paths), desc="bench", unit="step", disable=not progress)
    for path in paths:
        name = path.stem
        meta, arrays = blobfile.read_blob(path)
        r = {"static": static_numbers(path, meta), "training": training_summary(path), "errors": {}}
        res["models"][name] = r
        steps.set_postfix_str(f"{name} accuracy")
        try:
            key = tuple(meta["labels"])
            if key not in clips_by_labels:
                clips_by_labels[key] = evaluate.eval_clips(
                    data_dir, meta["labels"], max_per_word=cfg["max_per_word"],
                    progress=(lambda it: bar(it, desc="clips", unit="clip")) if bar else None)
            r["accuracy"] = accuracy(path, meta, arrays, clips_by_labels[key])
        except Exception as exc:  # one model's failure must not lose the others' numbers
            r["errors"]["accuracy"] = f"{type(exc).__name__}: {exc}"
        steps.update()
        steps.set_postfix_str(f"{name} firmware")
        try:
            r.update(firmware_run(path, wav, events, len(audio) / stream.RATE, profile))
        except Exception as exc:
            r["errors"]["firmware"] = f"{type(exc).__name__}: {exc}"
        if (r.get("unixport") or {}).get("streaming"):
            try:
                as_streamed(r, path, audio)
            except Exception as exc:
                r["errors"]["streaming"] = f"{type(exc).__name__}: {exc}"
        try:
            r["non_speech"] = nonspeech.detections(path, profile, quiet_wavs, PAD_MS)
        except Exception as exc:
            r["errors"]["non_speech"] = f"{type(exc).__name__}: {exc}"
        steps.update()
        r["boards"] = board_estimates(r["static"], r.get("unixport"), all_boards)
        try:
            r["min_heap_bytes"] = min_heap(path, profile)
        except Exception as exc:
            r["errors"]["min_heap"] = f"{type(exc).__name__}: {exc}"
        for e in r["boards"].values():
            try:
                e["fits_ram_budget_unix_measure"] = runs_in_heap(path, profile, e["ram_budget_bytes"])
            except Exception as exc:
                e["fits_ram_budget_unix_measure"] = None
                r["errors"]["fits_ram_budget"] = f"{type(exc).__name__}: {exc}"
        if name == "default" or not quick:
            try:
                r["qemu"] = qemu_figures(path)
            except Exception as exc:
                r["errors"]["qemu"] = f"{type(exc).__name__}: {exc}"
        steps.update()
    steps.close()
    assistant = Path(models_dir) / f"{ASSISTANT}.hark"
    if assistant.exists():
        if quick:
            res["assistant"] = {"skipped": "--quick (a full run measures it over 1 h of speech)"}
        else:
            try:
                res["assistant"] = assistant_figures(assistant, data_dir, wake_eval or WAKE_EVAL,
                                                     out_dir / ASSISTANT)
            except Exception as exc:
                res["assistant"] = {"error": f"{type(exc).__name__}: {exc}"}
    ratios(res["models"])
    res["machine"]["load_avg_end"] = list(os.getloadavg())
    (out_dir / "results.json").write_text(json.dumps(res, indent=1, default=float))
    md = to_markdown(res)
    (out_dir / "results.md").write_text(md)
    res["readme_updated"] = update_readme(readme, md) if readme else False
    return res


# --- streaming vs windowed inference (firmware/streaming.py) -------------------------------------

_STREAM_VS_WINDOW = """
import sys, gc, blob, engine, frontend, streaming
from array import array
from time import ticks_us, ticks_diff
from runtime import _push_frame
fb = blob.load(sys.argv[2])
fe = frontend.FrontEnd(fb.meta, fb.arrays)
del fb
b = blob.load(sys.argv[1])
win = engine.Interpreter(b)
every = int(sys.argv[6])
st = streaming.StreamingInterpreter(b, every)
del b
W = st.width
total = st.frames * W
src = open(sys.argv[3], 'rb')
dst = open(sys.argv[4], 'wb')
fdst = open(sys.argv[5], 'wb')
buf = array('h', bytes(640))
hops = 0
bad = 0
alloc = 0
s_sum = s_best = w_sum = w_best = s_blk = w_blk = blocks = 0
m0 = t0 = t1 = t2 = n = pos = r = 0     # every global exists before the measured pushes
f = None
gc.collect()
gc.disable()
while True:
    n = src.readinto(buf) // 2
    if not n:
        break
    pos = 0
    while pos < n:
        pos = fe.push(buf, pos, n)
        if not fe.ready:
            continue
        f = fe.frame
        if hops == 0:
            st.fill(f)
            for r in range(st.frames):
                win.input[r * W:(r + 1) * W] = f
            win.invoke()
        else:
            m0 = gc.mem_alloc()
            t0 = ticks_us()
            st.push(f)
            t1 = ticks_us()
            alloc += gc.mem_alloc() - m0
            _push_frame(win.input, f, total, W)
            if hops % every == 0:
                win.invoke()
            t2 = ticks_us()
            s_blk += ticks_diff(t1, t0)
            w_blk += ticks_diff(t2, t1)
            if hops % every == 0:     # best over blocks of `every` hops, per hop
                if blocks == 0 or s_blk < s_best:
                    s_best = s_blk
                if blocks == 0 or w_blk < w_best:
                    w_best = w_blk
                s_sum += s_blk
                w_sum += w_blk
                s_blk = w_blk = 0
                blocks += 1
        if hops % every == 0:
            if st.output != win.output:
                bad += 1
            dst.write(st.output)
            dst.write(win.output)
        fdst.write(f)
        hops += 1
        if gc.mem_free() < 65536:
            gc.collect()
gc.enable()
dst.close()
fdst.close()
k = max(1, blocks * every)
print(hops, bad, alloc, st.macs, st.window_macs, s_best // every, s_sum // k, w_best // every,
      w_sum // k,
      len(st.arena), len(win.arena), st.frames, W, len(st.output))
"""


def streaming_vs_windowed(model: Path, audio: np.ndarray, features: Path = None,
                          outputs: bool = False, every: int = 1) -> dict:
    """One run of the MicroPython unix port over `audio` (int16, 16 kHz): every hop, the
    streaming interpreter (one new column per layer) and the windowed engine (the whole window
    re-run) on the same front-end frames. MACs per hop and per second of audio, µs per hop (best,
    mean), whether every hop's output is identical and bytes allocated by streaming pushes.
    every: outputs wanted every N hops (the runtime's infer_every): the windowed engine runs on
    those hops only, the streaming one skips the columns no wanted output reads.
    features: blob whose front end makes the frames (default: the model's own).
    outputs=True adds the arrays: frames (every hop), output_hops, stream, window (int8)."""
    import tempfile

    from hark import FIRMWARE_DIR
    from hark.unixport import micropython_binary

    with tempfile.TemporaryDirectory(prefix="hark-stream-") as tmp:
        pcm, out, fout = Path(tmp) / "in.pcm", Path(tmp) / "out.bin", Path(tmp) / "frames.bin"
        np.asarray(audio, "<i2").tofile(pcm)
        res = subprocess.run([micropython_binary(), "-X", "heapsize=4M", "-c", _STREAM_VS_WINDOW,
                              str(model), str(features or model), str(pcm), str(out), str(fout),
                              str(every)],
                             capture_output=True, text=True, env=dict(os.environ, MICROPYPATH=str(FIRMWARE_DIR)))
        if res.returncode != 0:
            raise RuntimeError("streaming bench failed in the unix port: "
                               + (res.stdout + res.stderr).strip()[-800:])
        (hops, bad, alloc, s_macs, w_macs, s_best, s_mean, w_best, w_mean, s_arena, w_arena,
         frames, width, n_out) = (int(v) for v in res.stdout.split())
        rec = np.fromfile(out, np.int8).reshape(-1, 2 * n_out)
        frames_rec = np.fromfile(fout, np.int8).reshape(hops, width)
    feat = blobfile.read_blob(features or model)[0].get("features") or {}
    hops_per_s = feat.get("sample_rate", 16000) // feat.get("hop_length", 320)
    r = {"model": str(model), "hops": hops, "frames_per_window": frames, "every": every,
         "identical_outputs": bad == 0, "mismatched_hops": bad,
         "stream_alloc_bytes": alloc,
         "streaming": {"macs_per_hop": s_macs, "macs_per_second": s_macs * hops_per_s,
                       "us_per_hop_best": s_best, "us_per_hop_mean": s_mean, "arena_bytes": s_arena},
         "windowed": {"macs_per_hop": w_macs // every, "macs_per_second": w_macs * hops_per_s // every,
                      "us_per_hop_best": w_best, "us_per_hop_mean": w_mean, "arena_bytes": w_arena},
         "mac_ratio": w_macs / every / s_macs, "time_ratio_mean": w_mean / max(1, s_mean)}
    if outputs:
        r["frames"] = frames_rec
        r["output_hops"] = np.arange(0, hops, every)
        r["stream"] = rec[:, :n_out]
        r["window"] = rec[:, n_out:]
    return r

