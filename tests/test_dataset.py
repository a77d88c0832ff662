"""Dataset loader: layout, splits, label mapping and the errors users meet."""
import numpy as np
import pytest

from hark.training import dataset as ds
from helpers import write_wav


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    for word in ("yes", "no", "marvin"):
        for i in range(3):
            write_wav(tmp_path / word / f"spk{i}_nohash_0.wav", 0.1 * rng.standard_normal(16000))
    write_wav(tmp_path / "_background_noise_" / "hum.wav", 0.1 * rng.standard_normal(32000))
    (tmp_path / "validation_list.txt").write_text("yes/spk1_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("yes/spk2_nohash_0.wav\nmarvin/spk2_nohash_0.wav\n")
    return tmp_path


def test_splits_and_labels(tiny):
    d = ds.load_dataset(tiny)
    assert len(d.clips) == 9 and len(d.noise_files) == 1
    assert {c.label for c in d.clips if c.word == "marvin"} == {ds.UNKNOWN}
    assert [c.word for c in d.split("test")] == ["marvin", "yes"]
    assert [c.word for c in d.split("validation")] == ["yes"]
    assert d.counts()["train"] == {ds.UNKNOWN: 2, "no": 3, "yes": 1}


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(ds.DatasetError, match="no such folder.*hark data fetch"):
        ds.load_dataset(tmp_path / "nope")


def test_empty_label_folder_is_named(tiny):
    (tiny / "stop").mkdir()
    with pytest.raises(ds.DatasetError, match="stop"):
        ds.load_dataset(tiny)


def test_folder_without_any_known_label(tmp_path):
    write_wav(tmp_path / "cat" / "a.wav", np.zeros(16000))
    with pytest.raises(ds.DatasetError, match="right folder"):
        ds.load_dataset(tmp_path)


def test_empty_dataset(tmp_path):
    with pytest.raises(ds.DatasetError, match="no clips"):
        ds.load_dataset(tmp_path)


def test_wrong_rate_and_stereo_are_converted_and_reported(tmp_path):
    y = np.sin(np.arange(8000) / 10.0).astype(np.float32)
    write_wav(tmp_path / "a.wav", np.stack([y, y], axis=1), sr=8000)
    notes = []
    out = ds.read_audio(tmp_path / "a.wav", on_convert=notes.append)
    assert len(out) == 16000
    assert "2 channels downmixed" in notes[0] and "8000 -> 16000 Hz" in notes[0]


def test_unreadable_clips_are_skipped_and_counted(tiny):
    (tiny / "no" / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
    d = ds.load_dataset(tiny)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        audio, kept, skipped = ds.load_clips(d.clips)
    assert len(audio) == len(kept) == 9 and len(skipped) == 1
    assert skipped[0][0].name == "broken.wav"


def test_shared_data_layout(shared_data):
    d = ds.load_dataset(shared_data)
    counts = d.counts()
    assert sum(counts["test"].values()) == 397
    assert counts["train"]["on"] == 6 and counts["train"][ds.UNKNOWN] > 100
    assert len(d.noise_files) == 6
