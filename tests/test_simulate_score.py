"""`hark simulate --score` (what `make demo` prints): per-file verdicts and the totals."""
from pathlib import Path

from hark import SAMPLES_DIR
from hark.cli import main
from hark.commands.simulate import expected_label, verdict

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def test_expected_label_from_file_name():
    assert expected_label(Path("yes__abc_nohash_0.wav"), LABELS) == "yes"
    assert expected_label(Path("zero__abc_nohash_0.wav"), LABELS) is None
    assert expected_label(Path("_silence___tap.wav"), LABELS) is None


def test_verdict_needs_exactly_the_word_or_silence():
    assert verdict("yes", ["yes"]) and not verdict("yes", ["yes", "no"])
    assert not verdict("yes", []) and verdict(None, []) and not verdict(None, ["no"])


def test_score_counts_through_the_firmware(capsys):
    clips = [SAMPLES_DIR / "yes__c90c0105_nohash_0.wav", SAMPLES_DIR / "_silence___running_tap.wav"]
    assert main(["simulate", *map(str, clips), "--score"]) == 0
    out = capsys.readouterr().out
    assert "heard yes (expected yes) ok" in out
    assert "heard nothing (expected nothing) ok" in out
    assert "heard the right word in 1/1; unknown words and silence: stayed quiet in 1/1" in out


def _stream(tmp_path):
    """Two sample clips with silence between: "yes" at 1.0-2.0 s, "zero" at 3.0-4.0 s."""
    import json

    import numpy as np
    import soundfile as sf
    yes, _ = sf.read(SAMPLES_DIR / "yes__c90c0105_nohash_0.wav", dtype="int16")
    zero, _ = sf.read(SAMPLES_DIR / "zero__439c84f4_nohash_1.wav", dtype="int16")
    gap = np.zeros(16000, np.int16)
    wav = tmp_path / "stream.wav"
    sf.write(wav, np.concatenate([gap, yes, gap, zero, gap]), 16000, subtype="PCM_16")
    events = [{"label": "yes", "word": "yes", "start_s": 1.0, "end_s": 2.0, "target": True},
              {"label": "_unknown_", "word": "zero", "start_s": 3.0, "end_s": 4.0, "target": False}]
    return wav, events, json


def test_events_score_a_stream_through_the_firmware(tmp_path, capsys):
    wav, events, json = _stream(tmp_path)
    right = tmp_path / "right.json"
    right.write_text(json.dumps(events))
    assert main(["simulate", str(wav), "--events", str(right)]) == 0
    out = capsys.readouterr().out
    assert "1 commands, 1 other words" in out
    assert "detected 1/1 (100.0 %), false accepts 0" in out
    assert "allocated while running: 0 B" in out
    # the same audio said to hold "no": the "yes" the firmware hears is a miss and a false accept
    events[0]["label"] = events[0]["word"] = "no"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(events))
    assert main(["simulate", str(wav), "--events", str(wrong)]) == 0
    out = capsys.readouterr().out
    assert "detected 0/1 (0.0 %), false accepts 1" in out
    # no commands at all: nothing to detect, the "yes" is a false accept
    only_other = tmp_path / "other.json"
    only_other.write_text(json.dumps(events[1:]))
    assert main(["simulate", str(wav), "--events", str(only_other)]) == 0
    assert "detected 0/0 (— %), false accepts 1" in capsys.readouterr().out


def test_events_must_be_word_times(tmp_path, capsys):
    wav, _, _ = _stream(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    assert main(["simulate", str(wav), "--events", str(bad)]) == 1
    assert "is not a list of word events" in capsys.readouterr().err
    assert main(["simulate", str(wav), str(wav), "--events", str(bad)]) == 1
    assert "give exactly one WAV file" in capsys.readouterr().err


def test_score_skips_files_without_a_word_prefix(tmp_path, capsys):
    """A file named without `<word>__` is not silently taken as 'expected nothing'."""
    import shutil
    mine = tmp_path / "my_recording.wav"
    shutil.copyfile(SAMPLES_DIR / "yes__c90c0105_nohash_0.wav", mine)
    assert main(["simulate", str(mine), str(SAMPLES_DIR / "_silence___running_tap.wav"), "--score"]) == 0
    out = capsys.readouterr().out
    assert "my_recording.wav: heard yes (not scored: the name has no `<word>__` prefix" in out
    assert "stayed quiet in 1/1; 1 file(s) not scored" in out and "MISS" not in out


def test_simulate_and_monitor_show_detections_alike(capsys):
    """Both print the same line for a detection (simulate from the firmware's output, monitor
    from the board's)."""
    from hark.commands.monitor import Printer
    assert main(["simulate", str(SAMPLES_DIR / "yes__c90c0105_nohash_0.wav")]) == 0
    shown = [l.strip() for l in capsys.readouterr().out.splitlines() if ">>>" in l]
    assert shown and shown[0].startswith(">>> yes")
    time_s, score = shown[0].split("t=")[1].split(" s")[0], shown[0].split("p=")[1].split()[0]
    Printer()(f"t={time_s}s yes {score}")
    assert capsys.readouterr().out.strip() == shown[0]


def test_readme_quotes_what_make_demo_hears(capsys):
    """The README's make-demo count is what the firmware hears in samples/ with the default."""
    import re
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    m = re.search(r"currently (\d+) of the (\d+) command clips heard as the right\s+word and "
                  r"(\d+) of the (\d+) unknown-word/silence clips left alone", readme)
    assert m, "README no longer states make demo's count"
    hit, n_cmd, quiet, n_other = m.groups()
    assert main(["simulate", *map(str, sorted(SAMPLES_DIR.glob("*.wav"))), "--score"]) == 0
    assert (f"heard the right word in {hit}/{n_cmd}; unknown words and silence: stayed quiet "
            f"in {quiet}/{n_other}") in capsys.readouterr().out
