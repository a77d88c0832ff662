"""Custom wake word from text only: hark synth -> hark train --wake -> export -> the firmware in
`wake` grammar mode (hark simulate, and the per-threshold sweep of training/wake_eval.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark import boards
from hark.cli import main
from hark.training import blob, dataset as ds
from hark.training.train import TrainConfig, _class_plan, voice_split, wake_labels
from hark.training.wake_eval import firmware_sweep, operating_point, wake_board
from hark.unixport import run_firmware
from helpers import edit_output_layer

LABELS = ["_silence_", "_unknown_", "hey_hark"]


def _lean_towards_wake(w, b):
    """One epoch on a few clips never ranks the wake word first, so the firmware would have
    nothing to report: raise its logit so detections (and their timing) can be compared."""
    b[LABELS.index("hey_hark")] += 1.0
    return [w, b]


@pytest.fixture(scope="module")
def wake_run(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wake")
    synth = tmp / "synth"
    assert main(["synth", "--words", "hey hark:8", "--unknown", "6", "--engines", "espeak-ng",
                 "--no-augment", "--out", str(synth)]) == 0
    run = tmp / "run"
    assert main(["train", "--wake", "hey hark", "--synth", str(synth), "--data", str(shared_data),
                 "--out", str(run), "--epochs", "1", "--max-per-word", "5", "--views", "1",
                 "--class-size", "30", "--width", "16"]) == 0
    edit_output_layer(run / "model.keras", _lean_towards_wake)
    assert main(["export", str(run), "--out", str(run / "wake.hark"), "--threshold", "0.5",
                 "--average-window-ms", "300"]) == 0
    # The wake phrases back to back with 0.5 s of silence between them.
    gap = np.zeros(8000, np.int16)
    clips = sorted((synth / "hey_hark").glob("*.wav"))
    audio = np.concatenate([x for c in clips for x in (sf.read(c, dtype="int16")[0], gap)])
    sf.write(tmp / "phrases.wav", audio, 16000, subtype="PCM_16")
    return tmp, run


def test_blob_has_the_three_labels_and_the_threshold(wake_run):
    _, run = wake_run
    meta, _ = blob.read_blob(run / "wake.hark")
    assert meta["labels"] == LABELS
    assert meta["detector"]["threshold"] == 0.5 and meta["detector"]["average_window_ms"] == 300
    config = json.loads((run / "config.json").read_text())
    assert config["wake"] == "hey hark" and config["labels"] == LABELS


def test_simulate_runs_the_firmware_in_wake_mode(wake_run, tmp_path, capsys):
    tmp, run = wake_run
    profile = dict(boards.load("unix"), name="wake")
    profile["grammar"] = {"mode": "wake", "wake_word": "hey_hark", "command_window_ms": 0}
    board = tmp_path / "wake.json"
    board.write_text(json.dumps(profile))
    assert main(["simulate", str(tmp / "phrases.wav"), "--model", str(run / "wake.hark"),
                 "--board", str(board), "--stats"]) == 0
    out = capsys.readouterr().out
    assert "stats frames=" in out and "streaming=1" in out
    detections = [line.split() for line in out.splitlines() if line.strip().startswith(">>> ")]
    assert detections and all(d[1] == "hey_hark" for d in detections)


def test_threshold_sweep_matches_the_firmware_run(wake_run):
    """The sweep's fan of detectors sees what the firmware's own detector sees."""
    tmp, run = wake_run
    model, wav = run / "wake.hark", tmp / "phrases.wav"
    settings = [(300, 0.05), (300, 0.5), (300, 0.9), (1000, 0.5)]
    swept = firmware_sweep(model, wav, settings)
    assert len(swept) == 4 and swept[0]
    assert len(swept[0]) >= len(swept[1]) >= len(swept[2])
    for (window, thr), found in zip(settings, swept):
        board = wake_board("hey_hark")
        board["detector"] = {"average_window_ms": window, "thresholds": {"hey_hark": thr}}
        direct = run_firmware(model, board, wav=wav, pad_ms=1000)
        assert [d.time_s for d in direct.detections] == found
        assert {d.label for d in direct.detections} <= {"hey_hark"}


def test_wake_cli_needs_synthetic_clips(capsys):
    assert main(["train", "--wake", "hey hark", "--data", "x", "--out", "y"]) == 1
    assert "hark synth" in capsys.readouterr().err


def test_wake_labels_and_voice_split():
    assert wake_labels(" Hey  Hark ") == LABELS
    assert TrainConfig(data=[], wake="hey hark").labels == LABELS
    names = [f"espeak-v{i}_nohash_{n}.wav" for i in range(2000) for n in (0, 1)]
    splits = [voice_split(Path("w") / n) for n in names]
    assert splits[0::2] == splits[1::2]        # a voice's clips stay together
    share = {s: splits.count(s) / len(splits) for s in ("train", "validation", "test")}
    assert 0.75 < share["train"] < 0.85 and 0.07 < share["validation"] < 0.13


def test_class_plan_uses_every_negative():
    def clip(word, label):
        return ds.Clip(Path(word), word, label, "train")

    real = [clip("yes", "_unknown_")] * 7 + [clip("dog", "_unknown_")] * 5
    synth = [clip("hey_hark", "hey_hark")] * 3 + [clip("hey", "_unknown_")] * 4
    cfg = TrainConfig(data=[], wake="hey hark")
    plan, size = _class_plan(real, synth, cfg.labels, cfg, np.random.default_rng(0))
    assert size == 8                               # half of the 16 negatives
    assert sorted(plan["_unknown_"]) == sorted([("real", i) for i in range(12)] +
                                               [("synth", i) for i in range(3, 7)])
    assert len(plan["hey_hark"]) == 8 and {k for k, _ in plan["hey_hark"]} == {"synth"}
    with pytest.raises(ds.DatasetError, match="hark synth --words"):
        _class_plan(real, synth[3:], cfg.labels, cfg, np.random.default_rng(0))


def test_operating_point_is_the_best_recall_within_the_false_accept_budget():
    rows = [{"threshold": 0.5, "recall": 0.97, "fa_per_hour": 2.0},
            {"threshold": 0.8, "recall": 0.93, "fa_per_hour": 0.5},
            {"threshold": 0.85, "recall": 0.93, "fa_per_hour": 0.0},
            {"threshold": 0.9, "recall": 0.93, "fa_per_hour": 0.0},
            {"threshold": 0.95, "recall": 0.85, "fa_per_hour": 0.0}]
    assert operating_point(rows)["threshold"] == 0.9      # same recall, fewer FA, more margin
    assert operating_point(rows, max_fa=3)["threshold"] == 0.5
    assert operating_point(rows, max_fa=-1) is None


def test_unknown_weight_scales_only_the_unknown_class():
    def clip(word, label):
        return ds.Clip(Path(word), word, label, "train")

    labels = ["_silence_", "_unknown_", "yes"]
    real = [clip("yes", "yes")] * 10 + [clip("dog", "_unknown_")] * 4
    synth = [clip("cat", "_unknown_")] * 50
    cfg = TrainConfig(data=[], labels=labels, unknown_weight=3.0)
    plan, size = _class_plan(real, synth, labels, cfg, np.random.default_rng(0))
    assert size == 7 and len(plan["yes"]) == 7
    assert len(plan["_unknown_"]) == 21
    assert sum(k == "real" for k, _ in plan["_unknown_"]) == 7   # real_share 0.3 of 21


def test_label_real_share_moves_only_its_class():
    """--label-real-share _unknown_=0.5: real unknown words fill that share of _unknown_; the
    other classes keep --real-share; a label the run does not have is refused."""
    def clip(word, label):
        return ds.Clip(Path(word), word, label, "train")

    labels = ["_silence_", "_unknown_", "yes", "on"]
    real = ([clip("yes", "yes")] * 10 + [clip("on", "on")] * 2 + [clip("dog", "_unknown_")] * 4)
    synth = [clip("cat", "_unknown_")] * 50 + [clip("on", "on")] * 50
    def real_in(plan, label):
        return sum(k == "real" for k, _ in plan[label])
    base = TrainConfig(data=[], labels=labels, class_size=20)
    plan, _ = _class_plan(real, synth, labels, base, np.random.default_rng(0))
    assert (real_in(plan, "_unknown_"), real_in(plan, "on")) == (6, 6)      # 0.3 of 20
    cfg = TrainConfig(data=[], labels=labels, class_size=20, label_real_share={"_unknown_": 0.5})
    plan, _ = _class_plan(real, synth, labels, cfg, np.random.default_rng(0))
    assert (real_in(plan, "_unknown_"), real_in(plan, "on")) == (10, 6)
    assert len(plan["_unknown_"]) == 20 and len(plan["yes"]) == 20
    for label in ("off", "_silence_"):
        cfg = TrainConfig(data=[], labels=labels, class_size=20, label_real_share={label: 0.5})
        with pytest.raises(ds.DatasetError, match=f"--label-real-share {label}: not a word label"):
            _class_plan(real, synth, labels, cfg, np.random.default_rng(0))
