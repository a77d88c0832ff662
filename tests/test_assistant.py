"""Wake word + commands in one model: hark train --wake PHRASE --commands ..., the grammar the
exporter stores in the blob, the firmware taking it when the board profile has none, and the
end-to-end scoring of training/assistant_eval.py."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import make_variable
from hark import boards
from hark.cli import main
from hark.training import blob, dataset as ds
from hark.training.assistant_eval import (assistant_board, count_negatives, miss_reasons,
                                          near_miss_clips, operating_point, pairs_stream,
                                          score_near_misses, score_pairs, window_averages)
from hark.training.export import grammar_for
from hark.training.sweep import firmware_sweep
from hark.training.train import TrainConfig, _class_plan, load_split_audio, wake_labels
from hark.unixport import run_firmware
from helpers import edit_output_layer

COMMANDS = ["yes", "no"]
LABELS = ["_silence_", "_unknown_", "yes", "no", "hey_hark"]
GRAMMAR = {"mode": "wake+command", "wake_word": "hey_hark", "command_window_ms": 2500}


def _follow_the_audio(w, b):
    """One epoch on a few clips gives the same scores for every input: random output weights
    make the top label change with the audio, so the grammar has detections to gate."""
    return [np.random.default_rng(0).normal(0, 10, w.shape).astype(w.dtype), b]


@pytest.fixture(scope="module")
def assistant_run(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("assistant")
    synth = tmp / "synth"
    assert main(["synth", "--words", "hey hark:8", "--unknown", "6", "--engines", "espeak-ng",
                 "--no-augment", "--out", str(synth)]) == 0
    run = tmp / "run"
    assert main(["train", "--wake", "hey hark", "--commands", ",".join(COMMANDS),
                 "--synth", str(synth), "--data", str(shared_data), "--out", str(run),
                 "--epochs", "1", "--max-per-word", "5", "--views", "1", "--class-size", "20",
                 "--width", "16"]) == 0
    edit_output_layer(run / "model.keras", _follow_the_audio)
    assert main(["export", str(run), "--out", str(run / "assistant.hark"), "--threshold", "0.05",
                 "--label-threshold", "hey_hark=0.05", "--command-window-ms", "2500"]) == 0
    # every clip once, 0.3 s apart: with thresholds this low the untrained model fires often
    gap = np.zeros(4800, np.int16)
    clips = sorted((synth / "hey_hark").glob("*.wav"))
    clips += sorted((Path(shared_data) / "yes").glob("*.flac"))[:4]
    audio = np.concatenate([x for c in clips for x in (sf.read(c, dtype="int16")[0], gap)])
    sf.write(tmp / "mixed.wav", audio, 16000, subtype="PCM_16")
    return tmp, run


def test_run_has_the_commands_and_the_wake_word(assistant_run):
    _, run = assistant_run
    config = json.loads((run / "config.json").read_text())
    assert config["labels"] == LABELS and config["commands"] == COMMANDS
    meta, _ = blob.read_blob(run / "assistant.hark")
    assert meta["labels"] == LABELS
    assert meta["grammar"] == GRAMMAR
    assert meta["detector"]["thresholds"] == {"hey_hark": 0.05}


def _firmware_mode(mpy, model, board, tmp_path):
    path = tmp_path / "board.json"
    path.write_text(json.dumps(board))
    r = mpy("import runtime, options\n"
            f"rt = runtime.Runtime({str(model)!r}, options.load_board({str(path)!r}), printer=False)\n"
            "print(rt.detector.mode, rt.detector.wake, rt.detector.command_window_ms)")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_firmware_takes_the_blobs_grammar_unless_the_profile_has_one(assistant_run, mpy, tmp_path):
    _, run = assistant_run
    model = run / "assistant.hark"
    board = assistant_board()
    assert board["grammar"] is None
    assert _firmware_mode(mpy, model, board, tmp_path) == ["wake+command", "4", "2500"]
    override = dict(board, grammar={"mode": "wake", "wake_word": "yes", "command_window_ms": 0})
    assert _firmware_mode(mpy, model, override, tmp_path)[:2] == ["wake", "2"]


def test_shipped_profiles_defer_to_the_model():
    """The commands-only boards name no grammar, so an assistant model needs no configuration;
    a blob without one (the default model) still runs in `commands` mode."""
    for name in ("unix", "esp32-inmp441", "pyboard", "rp2040"):
        board = boards.load(name)
        assert board["grammar"] is None
        assert boards.model_errors(board, {"labels": ds.LABELS + ["hey_hark"]}) == []
    # a profile that names its own wake word still needs it among the labels
    assert "grammar.wake_word 'go'" in boards.model_errors(boards.load("esp32s3"),
                                                           {"labels": LABELS})[0]


def test_sweep_runs_the_blobs_grammar_as_the_firmware_does(assistant_run):
    """Commands alone fire in `commands` mode; with the blob's grammar none fires without the
    wake word before it, in the firmware and in the evaluation's detector sweep alike."""
    tmp, run = assistant_run
    model, wav = run / "assistant.hark", tmp / "mixed.wav"
    commands_only = dict(assistant_board(), grammar={"mode": "commands", "wake_word": None,
                                                     "command_window_ms": 0})
    assert {d.label for d in run_firmware(model, commands_only, wav=wav).detections} & {"yes", "no"}
    settings = [(300, 0.05), (300, 0.6), (300, 0.05, 0.5)]   # (window, wake, other labels)
    swept = firmware_sweep(model, wav, settings, assistant_board(), "hey_hark", pad_ms=1000)
    for (window, thr, *rest), found in zip(settings, swept):
        board = assistant_board()
        board["detector"] = {"average_window_ms": window, "thresholds": {"hey_hark": thr},
                             **({"threshold": rest[0]} if rest else {})}
        direct = run_firmware(model, board, wav=wav, pad_ms=1000)
        assert [(d.time_s, d.label) for d in direct.detections] == found
        last_wake = None
        for t, label in found:      # a command only within 2.5 s of a wake word, one per wake
            if label == "hey_hark":
                last_wake = t
            else:
                assert last_wake is not None and t - last_wake <= 2.5
                last_wake = None


def test_evaluate_chooses_on_validation_and_reports_test(assistant_run, shared_data, tmp_path):
    """assistant_eval end to end on a tiny model: a validation and a test part (other wake
    renderings, other real lists, other seeds), every setting scored on both, the operating
    point chosen on the validation rows and reported with the test row of the same setting;
    the held-out synthetic commands' pairs stream reported at that point; JSON + markdown +
    both DET curves."""
    from hark.training.assistant_eval import evaluate
    _, run = assistant_run
    for name, words, seed in (("eval", ["--words", "hey hark:3"], "1"),
                              ("val", ["--words", "hey hark:3"], "2"),
                              ("commands", ["--words", "no:3,stop:2"], "5"),
                              ("near", ["--near-misses", "hey hark", "--per-word", "2"], "6"),
                              ("near_val", ["--near-misses", "hey hark", "--per-word", "2"], "7")):
        assert main(["synth", *words, "--voice-set", "holdout", "--engines",
                     "espeak-ng", "--no-augment", "--seed", seed, "--out", str(tmp_path / name)]) == 0
    settings = [(300, 0.05, 0.05), (300, 0.9, 0.9), (500, 0.99, 0.99)]
    res = evaluate(run / "assistant.hark", shared_data, tmp_path / "eval", tmp_path / "out",
                   hours=0.005, pair_seconds=20, settings=settings, log=lambda _: None,
                   validation_eval=tmp_path / "val", validation_hours=0.005,
                   command_eval=tmp_path / "commands", near_misses=tmp_path / "near",
                   validation_near_misses=tmp_path / "near_val")
    val = res["validation"]
    for rows in (res["rows"], val["rows"]):
        assert [(r["average_window_ms"], r["threshold"], r["command_threshold"])
                for r in rows] == settings
        assert rows[0]["pairs"] >= 3 and rows[0]["wake_recall"] >= rows[1]["wake_recall"]
    assert (res["splits"], val["splits"]) == (["test"], ["validation"])
    assert res["seed"] != val["seed"] and res["negative_words"] > 0 < val["negative_words"]
    assert res["grammar"] == GRAMMAR and res["commands"] == COMMANDS
    # the JSON is committed under bench/: no path of the machine that measured it
    assert not any(Path(p).is_absolute() for p in (res["model"], res["data"], res["eval"], val["eval"]))
    op = res["operating_point"]
    assert op is not None and op["validation"] in val["rows"]
    i = val["rows"].index(op["validation"])
    assert {k: v for k, v in op.items() if k != "validation"} == res["rows"][i]
    synthetic = res["synthetic_commands"]
    assert synthetic["words"] == ["no"] and synthetic["seed"] not in (res["seed"], val["seed"])
    assert [(r["average_window_ms"], r["threshold"], r["command_threshold"])
            for r in synthetic["rows"]] == settings and synthetic["rows"][0]["pairs"] >= 3
    assert res["misses"]["test"]["pairs"] == op["pairs"]
    assert res["misses"]["test"]["wake_missed"] == op["pairs"] - op["wake_hits"]
    # the commands' own window, then per-command thresholds below its command threshold,
    # tuned on validation at the point's wake setting, measured again from the stored score
    # rows through the firmware detector: no fewer commands than the point on validation
    tuned, by_window = res["command_thresholds"], res["command_thresholds"]["command_window"]
    assert (tuned["average_window_ms"], tuned["threshold"]) == (op["average_window_ms"], op["threshold"])
    assert tuned["command_average_ms"] >= op["average_window_ms"]
    assert by_window["validation"]["command_hits"] >= op["validation"]["command_hits"]
    assert by_window["validation"]["wake_hits"] == op["validation"]["wake_hits"]
    assert all(t < tuned["command_threshold"] and c in COMMANDS
               for c, t in tuned["thresholds"].items())
    assert tuned["validation"]["command_hits"] >= by_window["validation"]["command_hits"]
    # the same detector on the stored rows: the same figures
    if (tuned["command_average_ms"], tuned["command_threshold"]) == (op["average_window_ms"],
                                                                     op["command_threshold"]):
        assert by_window["test"] == {k: op[k] for k in by_window["test"]}
    if not tuned["thresholds"]:
        assert tuned["test"] == by_window["test"]
    assert tuned["synthetic_commands"]["pairs"] == synthetic["rows"][0]["pairs"]
    # the near misses ("hey", "hark", "hey bark", ...: 8 phrases, 2 clips each) alone, no wake
    # phrase in the stream: every setting counts what woke the model, the lowest the most
    near = res["near_misses"]
    assert near["seed"] not in (res["seed"], val["seed"], synthetic["seed"])
    rows = near["rows"]
    assert [(r["average_window_ms"], r["threshold"], r["command_threshold"])
            for r in rows] == settings
    assert set(rows[0]["phrases"]) == {"hey", "hark", "hey_bark", "hey_dark", "hey_mark",
                                       "hey_park", "hey_sark", "hey_tark"}
    assert rows[0]["utterances"] >= 16 and rows[0]["woke"] >= rows[1]["woke"] >= rows[2]["woke"]
    assert tuned["near_misses"]["utterances"] == rows[0]["utterances"]
    # ... and another render of them on the validation part, every setting, no budget asked
    near_val = val["near_misses"]
    assert near_val["seed"] not in (near["seed"], res["seed"], val["seed"], synthetic["seed"])
    assert near_val["max_share"] is None and len(near_val["rows"]) == len(settings)
    assert set(near_val["rows"][0]["phrases"]) == set(rows[0]["phrases"])
    assert near_val["rows"][0]["woke"] >= near_val["rows"][2]["woke"]
    md = (tmp_path / "out" / "assistant_eval.md").read_text()
    assert "chosen on VALIDATION" in md and "| test |" in md and "Why pairs are missed" in md
    assert "VALIDATION: Near misses of the wake phrase" in md and "TEST: Near misses" in md
    assert "Per-command thresholds" in md and "Commands' own averaging window" in md
    assert "Held-out synthetic voices' no" in md and "Near misses of the wake phrase" in md
    for name in ("assistant_eval.json", "assistant_eval.md", "det_wake.png", "det_command.png",
                 "det_near.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_evaluate_refuses_overlapping_parts(assistant_run, shared_data, tmp_path):
    from hark.cli import HarkError
    from hark.training.assistant_eval import evaluate
    _, run = assistant_run
    with pytest.raises(HarkError, match="overlap"):
        evaluate(run / "assistant.hark", shared_data, tmp_path / "a", tmp_path / "out",
                 splits=("test", "validation"), validation_eval=tmp_path / "b")
    with pytest.raises(HarkError, match="their own wake phrases"):
        evaluate(run / "assistant.hark", shared_data, tmp_path, tmp_path / "out",
                 validation_eval=tmp_path / ".")
    with pytest.raises(ds.DatasetError, match="no clips of the model's commands"):
        evaluate(run / "assistant.hark", shared_data, tmp_path / "a", tmp_path / "out",
                 command_eval=tmp_path)
    with pytest.raises(ds.DatasetError, match='--near-misses "hey hark"'):
        evaluate(run / "assistant.hark", shared_data, tmp_path / "a", tmp_path / "out",
                 near_misses=tmp_path / "missing")
    with pytest.raises(HarkError, match="need a validation part"):
        evaluate(run / "assistant.hark", shared_data, tmp_path / "a", tmp_path / "out",
                 validation_near_misses=tmp_path / "b")
    with pytest.raises(HarkError, match="their own near misses"):
        evaluate(run / "assistant.hark", shared_data, tmp_path / "a", tmp_path / "out",
                 validation_eval=tmp_path / "b", near_misses=tmp_path / "c",
                 validation_near_misses=tmp_path / "c")
    with pytest.raises(HarkError, match="needs the validation part's near misses"):
        evaluate(run / "assistant.hark", shared_data, tmp_path / "a", tmp_path / "out",
                 validation_eval=tmp_path / "b", max_near=0.5)
    with pytest.raises(HarkError, match="share of the near misses, 0 to 1"):
        evaluate(run / "assistant.hark", shared_data, tmp_path / "a", tmp_path / "out",
                 validation_eval=tmp_path / "b", validation_near_misses=tmp_path / "c", max_near=50)


def test_labels_and_grammar_of_a_wake_and_commands_run():
    assert wake_labels("hey hark", COMMANDS) == LABELS
    assert TrainConfig(data=[], wake="hey hark", commands=COMMANDS).labels == LABELS
    assert grammar_for({"wake": "hey hark", "commands": COMMANDS, "labels": LABELS}, 2500) == GRAMMAR
    assert grammar_for({"wake": "hey hark", "commands": [],
                        "labels": ["_silence_", "_unknown_", "hey_hark"]}) == \
        {"mode": "wake", "wake_word": "hey_hark", "command_window_ms": 0}
    assert grammar_for({"wake": "", "labels": ds.LABELS}) is None


def test_class_plan_balances_commands_and_the_wake_word():
    def clip(word, label):
        return ds.Clip(Path(word), word, label, "train")

    real = [clip("yes", "yes")] * 10 + [clip("no", "no")] * 6 + [clip("dog", "_unknown_")] * 40
    synth = [clip("hey_hark", "hey_hark")] * 3 + [clip("hey", "_unknown_")] * 50
    cfg = TrainConfig(data=[], wake="hey hark", commands=COMMANDS, unknown_weight=2.0)
    plan, size = _class_plan(real, synth, cfg.labels, cfg, np.random.default_rng(0))
    assert size == 10                               # median real count, not half the negatives
    assert len(plan["yes"]) == len(plan["no"]) == len(plan["hey_hark"]) == 10
    assert {k for k, _ in plan["hey_hark"]} == {"synth"}
    assert len(plan["_unknown_"]) == 20             # unknown_weight, not every negative


def test_commands_need_a_wake_word(capsys):
    assert main(["train", "--commands", "yes,no", "--data", "x", "--synth", "y"]) == 1
    assert "--wake" in capsys.readouterr().err
    assert main(["train", "--wake", "hey hark", "--commands", "yes,hey hark", "--data", "x",
                 "--synth", "y"]) == 1
    assert "cannot also be a command" in capsys.readouterr().err


def test_export_refuses_a_threshold_for_a_label_the_model_lacks(assistant_run, tmp_path, capsys):
    _, run = assistant_run
    assert main(["export", str(run), "--out", str(tmp_path / "x.hark"),
                 "--label-threshold", "hey_mark=0.9"]) == 1
    assert "hey_mark" in capsys.readouterr().err and not (tmp_path / "x.hark").exists()


def test_pairs_stream_puts_a_command_just_after_each_wake_phrase(shared_data, tmp_path):
    wake = sorted((Path(shared_data) / "go").glob("*.flac"))[:3]      # stands in for the phrase
    commands = sorted((Path(shared_data) / "yes").glob("*.flac"))[:3]
    bank = ds.load_noise(ds.load_dataset(shared_data, require_labels=False))
    word_of = {p: "hey_hark" for p in wake}
    audio, events = pairs_stream(wake, commands, bank, 40, 3, word_of, tmp_path / "p.wav")
    assert len(audio) == 40 * 16000 and sf.info(tmp_path / "p.wav").frames == len(audio)
    assert len(events) >= 10 and len(events) % 2 == 0
    for w, c in zip(events[0::2], events[1::2]):
        assert (w["kind"], w["label"], c["kind"], c["label"]) == ("wake", "hey_hark", "command", "yes")
        assert 0.2 <= c["start_s"] - w["end_s"] <= 0.6 + 0.2 + 0.05   # gap + the clips' margins


def test_the_grid_sets_every_command_unless_the_blob_is_measured_as_shipped():
    """assistant_eval's grid and tuning start from one command threshold for all commands; hark
    bench measures the blob with its own per-command thresholds."""
    from hark.training.assistant_eval import setting_base
    from hark.training.sweep import detector_config

    meta = {"labels": ["_silence_", "_unknown_", "no", "hey_hark"], "detector": {
        "average_window_ms": 600, "threshold": 0.5, "thresholds": {"hey_hark": 0.4, "no": 0.3}}}
    grid = detector_config(setting_base(meta), (500, 0.6, 0.7), "hey_hark")
    assert grid["thresholds"] == {"hey_hark": 0.6} and grid["threshold"] == 0.7
    shipped = detector_config(setting_base(meta, True), (600, 0.4, 0.5), "hey_hark")
    assert shipped["thresholds"] == {"hey_hark": 0.4, "no": 0.3}


def test_pair_scores_and_false_alarms():
    events = [{"kind": "wake", "label": "hey_hark", "start_s": 1.0, "end_s": 1.5, "target": True},
              {"kind": "command", "label": "yes", "start_s": 1.8, "end_s": 2.2, "target": True},
              {"kind": "wake", "label": "hey_hark", "start_s": 5.0, "end_s": 5.5, "target": True},
              {"kind": "command", "label": "no", "start_s": 5.9, "end_s": 6.3, "target": True}]
    dets = [(1.6, "hey_hark"), (2.4, "yes"), (5.7, "hey_hark"), (6.5, "yes")]
    s = score_pairs(dets, events, "hey_hark", 10)
    assert (s["pairs"], s["wake_recall"], s["command_recall"], s["wrong_commands"]) == (2, 1.0, 0.5, 1)
    assert s["latency_ms_median"] == pytest.approx(200) and s["command_recall_given_wake"] == 0.5
    assert count_negatives([(1, "hey_hark"), (2, "yes"), (9, "no")], "hey_hark") == (1, 2)
    rows = [{"threshold": 0.5, "command_recall": 0.95, "false_wakes_per_hour": 3.0,
             "false_commands_per_hour": 0.3},
            {"threshold": 0.9, "command_recall": 0.9, "false_wakes_per_hour": 1.0,
             "false_commands_per_hour": 0.3},
            {"threshold": 0.8, "command_recall": 0.92, "false_wakes_per_hour": 0.7,
             "false_commands_per_hour": 0.7}]
    assert operating_point(rows)["threshold"] == 0.9
    assert operating_point(rows, max_wakes=0.5) is None
    # a near-miss budget: only settings where at most that share of the near misses woke it
    near = [{"woke": 2, "utterances": 10}, {"woke": 6, "utterances": 10},
            {"woke": 1, "utterances": 10}]
    assert operating_point(rows, near_rows=near, max_near=0.6)["threshold"] == 0.9
    assert operating_point(rows, near_rows=near, max_near=0.5) is None
    assert operating_point(rows, max_wakes=3, near_rows=near, max_near=0.5)["threshold"] == 0.5
    with pytest.raises(ValueError, match="one near-miss row per setting"):
        operating_point(rows, near_rows=near[:2], max_near=0.5)


def test_command_window_keeps_the_wake_setting_and_the_budgets(monkeypatch):
    """tune_command_window tries the commands' own windows from the point's up, at the point's
    wake window and threshold: the most commands within both false-alarm budgets, the point
    itself on a tie; the grid's base detector drops a blob's own command window."""
    from hark.training import assistant_eval as ae
    meta = {"detector": {"average_window_ms": 600, "threshold": 0.5, "command_average_ms": 900,
                         "thresholds": {"hey_hark": 0.4, "no": 0.3}}}
    assert ae.setting_base(meta)["detector"] == {"average_window_ms": 600, "threshold": 0.5,
                                                 "thresholds": {}}
    assert ae.setting_base(meta, blob_thresholds=True) is meta
    hits = {(600, 0.5): 10, (800, 0.5): 10, (900, 0.4): 12, (1000, 0.4): 14}
    seen = []

    def figures(model, part, configs, wake, board, tmp):
        seen.extend(configs)
        return [{"command_hits": hits.get((c["command_average_ms"], c["threshold"]), 0),
                 "false_commands": 0, "false_wakes_per_hour": 0,
                 "false_commands_per_hour": 1.0 if c["command_average_ms"] == 1000 else 0}
                for c in configs]
    monkeypatch.setattr(ae, "stored_figures", figures)
    base = ae.setting_base(meta)
    assert ae.tune_command_window(None, None, base, (600, 0.4, 0.5), "hey_hark", None, None,
                                  log=lambda _: None)[:2] == (900, 0.4)    # 1000 ms: 1 false/h
    assert {c["average_window_ms"] for c in seen} == {600}
    assert {c["thresholds"]["hey_hark"] for c in seen} == {0.4}
    assert {c["command_average_ms"] for c in seen} == {600, 700, 800, 900, 1000, 1200}
    hits.pop((900, 0.4))
    hits.pop((1000, 0.4))
    assert ae.tune_command_window(None, None, base, (600, 0.4, 0.5), "hey_hark", None, None,
                                  log=lambda _: None)[:2] == (600, 0.5)    # a tie: the point


def test_near_misses_count_each_utterance_that_woke_the_model(tmp_path):
    """A wake detection from a near miss's start to 1 s after its end counts against it, once
    however often it fires; commands detected on the stream are false commands."""
    events = [{"word": "hey_park", "start_s": 1.0, "end_s": 1.6},
              {"word": "hey_park", "start_s": 5.0, "end_s": 5.6},
              {"word": "hark", "start_s": 9.0, "end_s": 9.4}]
    dets = [(1.7, "hey_hark"), (2.0, "hey_hark"), (2.4, "yes"), (9.2, "hey_hark"),
            (12.0, "hey_hark")]
    s = score_near_misses(dets, events, "hey_hark")
    assert (s["utterances"], s["woke"], s["false_wakes"], s["false_commands"]) == (3, 2, 4, 1)
    assert s["phrases"] == {"hey_park": {"said": 2, "woke": 1}, "hark": {"said": 1, "woke": 1}}
    # the wake phrase's own clips in the folder are not near misses
    for word in ("hey_hark", "hey_park"):
        (tmp_path / word).mkdir()
        sf.write(tmp_path / word / "v_nohash_0.wav", np.zeros(160, np.int16), 16000)
    assert [p.parent.name for p in near_miss_clips(tmp_path, "hey_hark")] == ["hey_park"]


def test_miss_reasons_tell_a_wrong_command_from_a_low_score_and_a_quiet_wake():
    """Four pairs, 1 s each, 50 score rows per second: a hit, a wrong command first, a command
    whose average stays far under its threshold, and a wake phrase just under its own."""
    labels = LABELS                                 # _silence_ _unknown_ yes no hey_hark
    units = np.zeros((200, 5), np.int64)
    units[:, 0] = 255

    def say(label, first, last, level):
        units[first:last] = 0
        units[first:last, labels.index(label)] = level
    say("hey_hark", 0, 10, 255), say("yes", 20, 30, 255)        # pair 1: heard, right command
    say("hey_hark", 50, 60, 255), say("no", 70, 80, 255)        # pair 2: wrong command
    say("hey_hark", 100, 110, 255), say("yes", 120, 130, 50)    # pair 3: command far under
    say("hey_hark", 150, 160, 115)                              # pair 4: wake 0.45 < 0.5
    output = {"period_ms": 20, "scale": 1 / 256, "zero_point": -128}
    scores = (units - 128).astype(np.int8)
    assert window_averages(scores, output, 100)[9, 4] == pytest.approx(1, abs=0.01)
    events = []
    for k, word in enumerate(["yes", "yes", "yes", "no"]):
        events += [{"label": "hey_hark", "start_s": k, "end_s": k + 0.2},
                   {"label": word, "start_s": k + 0.4, "end_s": k + 0.6}]
    found = [(0.2, "hey_hark"), (0.5, "yes"), (1.2, "hey_hark"), (1.5, "no"), (2.2, "hey_hark")]
    part = {"pair_scores": scores, "output": output, "pair_events": events}
    m = miss_reasons(part, found, labels, "hey_hark", (100, 0.5, 0.6))
    assert (m["pairs"], m["wake_missed"], m["wake_near"], m["wake_far"]) == (4, 1, 1, 0)
    assert (m["command_missed"], m["wrong_first"], m["command_far"], m["command_near"]) == (2, 1, 1, 0)
    assert m["command_over_threshold_not_fired"] == 0


REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "samples" / "assistant" / "assistant_demo.wav"


def test_shipped_assistant_model_carries_its_grammar_and_recipe():
    meta, _ = blob.read_blob(REPO / "models" / "assistant.hark")
    assert meta["grammar"]["mode"] == "wake+command" and meta["grammar"]["wake_word"] == "hey_hark"
    assert meta["labels"] == ds.LABELS + ["hey_hark"]
    recipe = json.loads((REPO / "models" / "assistant.train.json").read_text())["config"]
    assert recipe["wake"] == "hey hark" and recipe["commands"] == ds.COMMANDS


def test_shipped_assistant_runs_the_operating_point_chosen_on_validation():
    """The blob's detector is the setting docs/assistant/assistant_eval.json chose on the
    validation part (the operating point's wake window and threshold, then the commands' own
    window, threshold and per-command thresholds tuned at it), and the Makefile exports it:
    losing it in either fails here."""
    meta, _ = blob.read_blob(REPO / "models" / "assistant.hark")
    res = json.loads((REPO / "docs" / "assistant" / "assistant_eval.json").read_text())
    op, tuned, det = res["operating_point"], res["command_thresholds"], meta["detector"]
    assert res["validation"]["splits"] == ["validation"] and res["splits"] == ["test"]
    assert (tuned["average_window_ms"], tuned["threshold"]) == (op["average_window_ms"],
                                                                op["threshold"])
    assert det["average_window_ms"] == op["average_window_ms"]
    assert det["thresholds"]["hey_hark"] == pytest.approx(op["threshold"])
    assert det["command_average_ms"] == tuned["command_average_ms"]
    assert det["threshold"] == pytest.approx(tuned["command_threshold"])
    own = tuned["thresholds"]
    assert own and {k: v for k, v in det["thresholds"].items() if k != "hey_hark"} == pytest.approx(own)
    # the Makefile exports all of it for the shipped phrase and commands, only the operating
    # point for others (whose labels the tuned commands may not be)
    point = ["--average-window-ms", str(op["average_window_ms"]), "--label-threshold",
             f"hey_hark={op['threshold']:g}"]
    tuning = ["--command-average-ms", str(tuned["command_average_ms"]), "--threshold",
              f"{tuned['command_threshold']:g}"]
    tuning += [x for c, t in sorted(own.items()) for x in ("--label-threshold", f"{c}={t:g}")]
    assert make_variable("ASSISTANT_DETECTOR") == point + tuning
    ok_lamp = make_variable("ASSISTANT_DETECTOR", "WAKE=ok lamp", "COMMANDS=on,off,up,down")
    assert ok_lamp == point[:-1] + [f"ok_lamp={op['threshold']:g}", "--threshold",
                                    f"{op['command_threshold']:g}"]


def _make_target(make: str, target: str) -> list:
    """The recipe lines of a Makefile target, continuation lines joined."""
    block = make.replace("\\\n", " ").split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()[1:]]


def _synth_folders(train_line: str) -> list:
    """The folders after --synth in a `hark train` line (up to the next option or variable)."""
    return re.search(r"--synth ((?:[^-\s$]\S*\s+)+)", train_line).group(1).split()


def test_make_assistant_reproduces_the_shipped_recipe():
    """`make assistant`'s train line and seed are the shipped model's recorded recipe: the
    synthetic folders, class size, word tails and width."""
    make = (REPO / "Makefile").read_text()
    cfg = json.loads((REPO / "models" / "assistant.train.json").read_text())["config"]
    train = next(line for line in _make_target(make, "assistant") if " train --wake" in line)
    assert _synth_folders(train) == cfg["synth"]
    assert f"--class-size {cfg['class_size']} " in train
    assert f"--tail-unknown {cfg['tail_unknown']:g} " in train
    assert re.search(r"^ASSISTANT_SEED \?= (\d+)$", make, re.M).group(1) == str(cfg["seed"])
    assert re.search(r"^ASSISTANT_WIDTH \?= (\d+)$", make, re.M).group(1) == str(cfg["width"])


def test_assistant_recipe_trains_on_no_held_out_voice():
    """Every wake-phrase folder `make assistant` and `make synth` train on is rendered from
    training voices only, and the folders it measures on from held-out voices only."""
    make = (REPO / "Makefile").read_text().replace("$(WAKE_LABEL)", make_variable("WAKE_LABEL")[0])
    near = {name: make_variable(name) for name in ("NEAR_MISSES_EVAL", "NEAR_MISSES_VAL")}
    recipe = [line.replace("$(NEAR_MISSES_EVAL)", "$(SYNTH) " + " ".join(near["NEAR_MISSES_EVAL"]))
              .replace("$(NEAR_MISSES_VAL)", "$(SYNTH) " + " ".join(near["NEAR_MISSES_VAL"]))
              for line in _make_target(make, "assistant") + _make_target(make, "synth")]
    made = {}
    for line in recipe:
        if "$(SYNTH)" in line:
            out = re.search(r"--out (\S+)", line).group(1)
            made.setdefault(out, set()).add("--voice-set holdout" in line)
    train = next(line for line in recipe if " train --wake" in line)
    trained = _synth_folders(train)
    measured = re.findall(r"--(?:(?:validation-|command-)?eval|(?:validation-)?near-misses) (\S+)",
                          " ".join(_make_target(make, "assistant-eval")))
    wake_folders = [f for f in trained if "wake" in f]
    assert len(wake_folders) >= 2 and len(measured) == 5
    # the validation part's near misses: the same held-out voices, another render than the test's
    seeds = {name: words[words.index("--seed") + 1] for name, words in near.items()}
    assert seeds["NEAR_MISSES_EVAL"] != seeds["NEAR_MISSES_VAL"]
    assert all(made[f] == {False} for f in wake_folders), made
    assert all(made[f] == {True} for f in measured), made
    # make assistant NEAR_TRAIN=100: the near misses it trains on, from training voices only
    near_train = make_variable("NEAR_MISSES_TRAIN", "NEAR_TRAIN=100")
    folder = make_variable("NEAR_TRAIN_DIR", "NEAR_TRAIN=100")
    assert folder and near_train[near_train.index("--out") + 1] == folder[0]
    assert near_train[near_train.index("--voice-set") + 1] == "train"
    assert "$(NEAR_TRAIN_DIR)" in train and make_variable("NEAR_TRAIN_DIR") == []
    ship = next(line for line in _make_target(make, "assistant") if "--out models/assistant.hark" in line)
    assert '[ -z "$(NEAR_TRAIN_DIR)$(ASSISTANT_EXTRA)" ]' in ship, \
        "a NEAR_TRAIN run or one with ASSISTANT_EXTRA options must not replace the shipped model"
    assert "$(ASSISTANT_EXTRA)" in train and make_variable("ASSISTANT_EXTRA") == []


def test_training_drops_clips_of_held_out_voices(tmp_path):
    """hark train reads a synth folder's voices.csv and leaves out every clip `hark synth`
    rendered with a held-out voice, whichever folder it sits in."""
    (tmp_path / "hey_hark").mkdir()
    for name in ("kept.wav", "held.wav"):
        sf.write(tmp_path / "hey_hark" / name, np.zeros(16000, np.int16), 16000)
    (tmp_path / "voices.csv").write_text("path,voice,split\nhey_hark/kept.wav,kokoro-us-kumo,train\n"
                                         "hey_hark/held.wav,kokoro-us-tebukuro,holdout\n")
    d = ds.load_dataset(tmp_path, require_labels=False)
    _, kept = load_split_audio([d], None, TrainConfig(data=str(tmp_path)), np.random.default_rng(0), "test")
    assert [c.path.name for c in kept] == ["kept.wav"]


def test_drop_engines_leaves_out_one_voice_family(tmp_path):
    """--drop-engines: every clip of the named engine goes (held-out voices still go too); an
    engine with no clip there, or a folder without voices.csv, is an error, not a silent no-op."""
    (tmp_path / "on").mkdir()
    rows = [("a.wav", "mbrola", "train"), ("b.wav", "kokoro", "train"),
            ("c.wav", "pico", "holdout"), ("d.wav", "pico", "train")]
    for name, _, _ in rows:
        sf.write(tmp_path / "on" / name, np.zeros(16000, np.int16), 16000)
    (tmp_path / "voices.csv").write_text("path,engine,split\n" + "".join(
        f"on/{name},{engine},{split}\n" for name, engine, split in rows))
    d = ds.load_dataset(tmp_path, require_labels=False)
    cfg, rng = TrainConfig(data=str(tmp_path)), np.random.default_rng(0)
    _, kept = load_split_audio([d], None, cfg, rng, "test", drop_engines=["mbrola"])
    assert sorted(c.path.name for c in kept) == ["b.wav", "d.wav"]
    with pytest.raises(ds.DatasetError, match="--drop-engines rhvoice: no clip of rhvoice"):
        load_split_audio([d], None, cfg, rng, "test", drop_engines=["rhvoice"])
    (tmp_path / "voices.csv").unlink()
    with pytest.raises(ds.DatasetError, match="no voices.csv"):
        load_split_audio([ds.load_dataset(tmp_path, require_labels=False)], None, cfg, rng,
                         "test", drop_engines=["mbrola"])


def test_demo_takes_the_wake_phrase_of_a_held_out_voice(tmp_path):
    """The demo's wake phrases come from held-out voices only: a training voice's clip is not
    taken, and a voice with no held-out clip says how to make one."""
    from hark.training.assistant_demo import wake_clip
    (tmp_path / "voices.csv").write_text(
        "path,voice,label,split\nhey_hark/b.wav,flite-rms,hey_hark,holdout\n"
        "hey_hark/a.wav,flite-rms,hey_hark,train\nhey_hark/c.wav,flite-rms,hey_hark,holdout\n")
    assert wake_clip(tmp_path, "flite-rms") == tmp_path / "hey_hark" / "b.wav"
    with pytest.raises(ds.DatasetError, match="no held-out hey_hark clip by flite-kal.*hark synth"):
        wake_clip(tmp_path, "flite-kal")


def test_demo_commands_alone_stay_silent_and_fire_after_the_wake_word():
    """make demo: on the bundled stream the assistant model hears nothing until the first wake
    phrase, then every wake phrase and the command after it; the commands-only default model
    fires on the commands alone too."""
    events = json.loads((DEMO.parent / "assistant_demo_events.json").read_text())
    assert DEMO.stat().st_size < 1_000_000
    first_wake = min(e["start_s"] for e in events if e["label"] == "hey_hark")
    alone = [e for e in events if not e["target"]]
    assert alone and all(e["end_s"] < first_wake for e in alone)
    board = boards.load("unix")
    heard = run_firmware(REPO / "models" / "assistant.hark", board, wav=DEMO).detections
    assert [d.label for d in heard] == [e["label"] for e in events if e["target"]]
    assert all(d.time_s > first_wake for d in heard)
    default = run_firmware(REPO / "models" / "default.hark", board, wav=DEMO).detections
    assert [d.label for d in default if d.time_s < first_wake] == [e["label"] for e in alone]


def test_bench_measures_the_assistant_at_the_blobs_settings(assistant_run, shared_data, tmp_path,
                                                            monkeypatch):
    """hark bench's assistant section: the DET rows over the wake threshold at the blob's window
    and command threshold, the shipped row picked out, and a table that marks it."""
    from hark.training import assistant_eval
    from hark.training.bench import assistant_figures, assistant_markdown
    _, run = assistant_run
    evaluate, kept = assistant_eval.evaluate, []
    monkeypatch.setattr(assistant_eval, "evaluate", lambda *a, **k: kept.append(
        k["blob_thresholds"]) or evaluate(*a, **k))
    model = run / "assistant.hark"
    assert assistant_figures(model, shared_data, tmp_path / "none", tmp_path / "o")["skipped"]
    held_out = tmp_path / "eval"
    assert main(["synth", "--words", "hey hark:3", "--voice-set", "holdout", "--engines",
                 "espeak-ng", "--no-augment", "--out", str(held_out)]) == 0
    a = assistant_figures(model, shared_data, held_out, tmp_path / "out", hours=0.005,
                          pair_seconds=20, with_qemu=False)
    meta, _ = blob.read_blob(model)
    assert a["shipped_setting"] == {"average_window_ms": meta["detector"]["average_window_ms"],
                                    "wake_threshold": 0.05, "command_threshold": 0.05,
                                    "command_thresholds": {},    # and one window for both
                                    "command_average_ms": meta["detector"]["average_window_ms"]}
    assert {r["average_window_ms"] for r in a["rows"]} == {meta["detector"]["average_window_ms"]}
    assert {r["command_threshold"] for r in a["rows"]} == {0.05}
    shipped = next(r for r in a["rows"] if r["threshold"] == 0.05)
    assert a["wake_recall"] == shipped["wake_recall"] and a["pairs"] >= 3
    assert a["wake_recall"] >= a["rows"][-1]["wake_recall"]      # lowest threshold hears most
    assert kept == [True]            # the blob as shipped, its per-command thresholds too
    md = "\n".join(assistant_markdown(a))
    assert "0.05 (shipped)" in md and md.count("(shipped)") == 1
    assert "no data/synth/near_*" in md
    assert (tmp_path / "out" / "det_wake.png").stat().st_size > 0
    # near misses beside the wake phrases (make synth's data/synth/near_hey_hark): per row
    assert main(["synth", "--near-misses", "hey hark", "--per-word", "1", "--voice-set",
                 "holdout", "--engines", "espeak-ng", "--no-augment",
                 "--out", str(tmp_path / "near_hey_hark")]) == 0
    a = assistant_figures(model, shared_data, held_out, tmp_path / "out", hours=0.005,
                          pair_seconds=20, with_qemu=False)
    assert all(r["near_misses"] >= 8 and 0 <= r["near_misses_woke"] <= r["near_misses"]
               for r in a["rows"])
    assert a["rows"][-1]["near_misses_woke"] <= a["rows"][0]["near_misses_woke"]
    assert f"| {a['rows'][0]['near_misses_woke']} of {a['rows'][0]['near_misses']} |" in "\n".join(
        assistant_markdown(a))
