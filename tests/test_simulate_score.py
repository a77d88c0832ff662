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
