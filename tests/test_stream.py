"""Long test streams (training/stream.py): deterministic, words where the events say, scoring rules."""
import numpy as np
import pytest
import soundfile as sf

from hark.training.augment import active_region
from hark.training.rooms import MEASUREMENT_SEED, impulse_responses
from hark.training.stream import make_stream, place_word, score_stream

RATE = 16000


@pytest.fixture(scope="module")
def made(shared_data, tmp_path_factory):
    wav = tmp_path_factory.mktemp("stream") / "s.wav"
    audio, events = make_stream(shared_data, 60, seed=3, unknown_dir=None, out_wav=wav)
    return audio, events, wav


def test_deterministic_and_written(made, shared_data):
    audio, events, wav = made
    again, events2 = make_stream(shared_data, 60, seed=3, unknown_dir=None)
    assert np.array_equal(audio, again) and events == events2
    other, _ = make_stream(shared_data, 60, seed=4, unknown_dir=None)
    assert not np.array_equal(audio, other)
    y, sr = sf.read(wav, dtype="int16")
    assert sr == RATE and np.array_equal(y, audio) and len(audio) == 60 * RATE


def test_rooms_play_every_word_in_a_room_and_keep_the_stream_reproducible(made, shared_data):
    """--rooms: the same rooms every time; each word placed in one rings on after it ends."""
    audio, events, _ = made
    roomed, room_events = make_stream(shared_data, 60, seed=3, unknown_dir=None, rooms=4)
    again, _ = make_stream(shared_data, 60, seed=3, unknown_dir=None, rooms=4)
    assert np.array_equal(roomed, again) and not np.array_equal(roomed, audio)
    assert room_events[0]["source"] == events[0]["source"]
    word = np.zeros(RATE, np.float32)
    word[4000:8000] = 0.3 * np.sin(np.arange(4000) / 5.0)
    level = np.full(4 * RATE, 1e-3, np.float32)

    def after_end(rirs):    # energy in the 150 ms after the word's end over the word's own
        out = np.zeros(4 * RATE, np.float32)
        e = place_word(out, level, word, RATE, np.random.default_rng(0), rirs=rirs)
        a, b = int(e["start_s"] * RATE), int(e["end_s"] * RATE)
        return np.mean(out[b:b + 2400] ** 2) / np.mean(out[a:b] ** 2)
    assert after_end(impulse_responses(4, MEASUREMENT_SEED)) > 100 * max(after_end(()), 1e-9)


def test_events_are_ordered_held_out_words(made, shared_data):
    audio, events, _ = made
    held_out = set((shared_data / "testing_list.txt").read_text().split()) | \
        set((shared_data / "validation_list.txt").read_text().split())
    targets = [e for e in events if e["target"]]
    assert len(targets) >= 8 and len(events) > len(targets)
    for e in targets:
        assert "/".join(e["source"].split("/")[-2:]) in held_out
    for a, b in zip(events, events[1:]):
        assert a["end_s"] < b["start_s"]
    assert events[-1]["end_s"] <= 60
    assert all(-10 < e["snr_db"] < 90 for e in events)


def test_words_are_louder_than_the_gaps(made):
    audio, events, _ = made
    x = audio.astype(np.float64)
    inside = np.zeros(len(x), bool)
    for e in events:
        inside[int(e["start_s"] * RATE):int(e["end_s"] * RATE)] = True
    words = [np.sqrt(np.mean(x[int(e["start_s"] * RATE):int(e["end_s"] * RATE)] ** 2)) for e in events]
    gap = np.sqrt(np.mean(x[~inside] ** 2))
    assert np.median(words) > 2 * gap


def test_active_region():
    y = np.zeros(16000, np.float32)
    y[4000:8000] = np.sin(np.arange(4000) / 5)
    a, b = active_region(y)
    assert abs(a - 4000) <= 160 and abs(b - 8000) <= 160
    assert active_region(np.zeros(100, np.float32)) == (0, 100)


EVENTS = [
    {"label": "yes", "start_s": 1.0, "end_s": 1.5, "target": True, "snr_db": 25.0},
    {"label": "_unknown_", "start_s": 4.0, "end_s": 4.5, "target": False},
    {"label": "no", "start_s": 7.0, "end_s": 7.5, "target": True, "snr_db": 5.0},
    {"label": "yes", "start_s": 10.0, "end_s": 10.5, "target": True, "snr_db": 12.0},
]


def test_score_rules():
    dets = [(2.1, "yes"), (2.4, "yes"), (4.2, "up"), (7.6, "yes"), (8.0, "no"), (20.0, "go")]
    s = score_stream(dets, EVENTS, tolerance=1.0, seconds=3600)
    assert (s["targets"], s["hits"], s["misses"]) == (3, 2, 1)
    assert s["frr"] == pytest.approx(1 / 3)
    # second "yes" (duplicate), "up" on a distractor, "yes" during "no", "go" in noise
    assert s["false_accepts"] == 4 and s["substitutions"] == 3 and s["spurious"] == 1
    assert s["fa_per_hour"] == pytest.approx(4.0) and s["hours"] == pytest.approx(1.0)
    assert s["latency_ms_median"] == pytest.approx(550.0)
    assert s["per_label"]["yes"] == {"n": 2, "hits": 1, "recall": 0.5}
    assert s["per_snr_db"] == {"<10": {"n": 1, "hits": 1, "recall": 1.0},
                               "10-20": {"n": 1, "hits": 0, "recall": 0.0},
                               ">=20": {"n": 1, "hits": 1, "recall": 1.0}}


def test_score_edges():
    late = score_stream([{"time_s": 2.6, "label": "yes"}], EVENTS[:1], tolerance=1.0)
    assert late["hits"] == 0 and late["false_accepts"] == 1
    early = score_stream([(0.9, "yes")], EVENTS[:1], tolerance=1.0)
    assert early["hits"] == 0
    none = score_stream([], EVENTS, seconds=60)
    assert none["frr"] == 1.0 and none["fa_per_hour"] == 0 and none["latency_ms_median"] is None
