"""Simulated rooms: reproducible impulse responses, the word kept in place and at its level,
off unless asked for in augmentation, and the far-field measurement of cross-validation."""
import numpy as np

from hark.training import augment as aug
from hark.training import crossval, rooms
from test_augment import bank, clip


def test_rooms_are_reproducible_and_each_starts_with_its_direct_path():
    a = rooms.impulse_responses(6, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, rooms.impulse_responses(6, seed=3)))
    assert not np.array_equal(a[0], rooms.impulse_responses(6, seed=4)[0])
    for h in a:
        assert h.dtype == np.float32
        assert abs(float(np.sum(np.square(h, dtype=np.float64))) - 1) < 1e-4
        assert int(np.argmax(np.abs(h))) <= 8           # the direct path, then reflections
        assert 0.2 * 16000 <= len(h) <= 1.2 * 0.7 * 16000 + 1
        tail = np.sum(np.square(h[int(0.05 * 16000):], dtype=np.float64))
        assert tail > 0.05      # a room, not a delay: reflections carry energy after 50 ms


def test_in_room_keeps_length_level_and_where_the_word_is():
    y = clip()
    for h in rooms.impulse_responses(4, seed=5):
        wet = rooms.in_room(y, h)
        assert wet.shape == y.shape and wet.dtype == np.float32
        assert abs(np.sqrt(np.mean(wet ** 2)) / np.sqrt(np.mean(y ** 2)) - 1) < 1e-3
        start, _ = aug.active_region(wet)
        assert abs(start - 6000) <= 160                 # onset where it was, within a frame
        assert not np.allclose(wet, y, atol=1e-3)


def test_rooms_off_by_default_and_drawn_when_asked():
    """room_prob 0 (every recipe so far) draws nothing more from the generator, so those runs
    reproduce; with a bank and room_prob 1 every example changes."""
    h = rooms.impulse_responses(3, seed=6)
    plain = aug.augment(clip(), np.random.default_rng(5), bank())
    assert np.array_equal(plain, aug.augment(clip(), np.random.default_rng(5), bank(),
                                             aug.AugmentConfig(room_prob=0.0, rooms=h)))
    assert np.array_equal(plain, aug.augment(clip(), np.random.default_rng(5), bank(),
                                             aug.AugmentConfig(room_prob=1.0)))
    for s in range(5):
        roomed = aug.augment(clip(), np.random.default_rng(s), bank(),
                             aug.AugmentConfig(room_prob=1.0, rooms=h, noise_prob=0))
        assert not np.array_equal(roomed, aug.augment(clip(), np.random.default_rng(s), bank(),
                                                      aug.AugmentConfig(noise_prob=0)))


def test_far_field_is_the_same_audio_for_the_same_seed():
    h = rooms.impulse_responses(3, seed=7)
    clips = [clip(s) for s in range(4)]
    a = crossval.far_field(clips, h, bank(), seed=1)
    b = crossval.far_field(clips, h, bank(), seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], crossval.far_field(clips, h, bank(), seed=2)[0])
    for x, y in zip(a, clips):
        assert x.shape == y.shape and np.max(np.abs(x)) <= 1.0
        noise = x - rooms.in_room(y, h[0])       # whatever room it drew, noise was added
        assert np.std(noise) > 0


def test_crossval_table_gains_a_rooms_row():
    per_class = {c: 0.5 for c in crossval.COLUMNS}
    seed = dict(per_class, n={"on": 8, "off": 7})
    result = {"student": {0: seed}, "teacher": {}, "rooms": {0: dict(seed, all=0.25)}}
    crossval.add_spread(result, "student")
    crossval.add_spread(result, "rooms")
    table = crossval.markdown(result, "fake")
    assert "| student in simulated rooms, 1 seeds |" in table
    assert "25.0 ± 0.0" in table.splitlines()[-1]


def test_fold_test_audio_is_the_folds_speakers_and_a_class_of_silence(shared_data):
    from hark.training import dataset as ds
    from hark.training.train import SCARCE_LABELS, cv_fold_of, speaker

    config = {"labels": list(ds.LABELS), "data": [str(shared_data)], "cv_folds": 3, "cv_fold": 1}
    ys, y_true, noise = crossval.fold_test_audio(config)
    assert len(ys) == len(y_true) and noise and all(len(y) == 16000 for y in ys)
    silence = int(np.sum(y_true == config["labels"].index(ds.SILENCE)))
    assert silence == aug.silence_count(len(ys) - silence, config["labels"])
    d = ds.load_dataset(shared_data, config["labels"])
    fold_speakers = {speaker(c.path) for c in d.clips
                     if c.label in SCARCE_LABELS and cv_fold_of(c.path, 3) == 1}
    scarce = [config["labels"].index(label) for label in SCARCE_LABELS]
    assert int(np.isin(y_true, scarce).sum()) == sum(
        1 for c in d.clips if c.label in SCARCE_LABELS and speaker(c.path) in fold_speakers)
    again, _, _ = crossval.fold_test_audio(config)
    assert all(np.array_equal(a, b) for a, b in zip(ys, again))
