"""Augmentation: deterministic under a seed, length-preserving, bounded."""
import numpy as np
import pytest

from hark.training import augment as aug


def clip(seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros(16000, np.float32)
    y[6000:10000] = 0.3 * np.sin(np.arange(4000) / 5.0) * rng.uniform(0.5, 1, 4000)
    return y


def bank():
    return [np.random.default_rng(9).standard_normal(40000).astype(np.float32)]


def test_same_seed_same_output():
    a = aug.augment(clip(), np.random.default_rng(42), bank())
    b = aug.augment(clip(), np.random.default_rng(42), bank())
    c = aug.augment(clip(), np.random.default_rng(43), bank())
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_length_and_range_kept():
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = aug.augment(clip() * 4, rng, bank())
        assert y.shape == (16000,) and y.dtype == np.float32
        assert np.abs(y).max() <= 1.0 and np.isfinite(y).all()


def test_time_shift_moves_without_wrapping():
    y = np.arange(10, dtype=np.float32)
    assert aug.time_shift(y, 3).tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    assert aug.time_shift(y, -3).tolist() == [3, 4, 5, 6, 7, 8, 9, 0, 0, 0]


def test_noise_at_requested_snr():
    y, noise = clip(), bank()[0][:16000]
    mixed = aug.add_noise(y, noise, 10.0)
    snr = 10 * np.log10(np.mean(y ** 2) / np.mean((mixed - y) ** 2))
    assert abs(snr - 10.0) < 0.01


def test_silence_levels_span_quiet_to_loud():
    rng = np.random.default_rng(0)
    peaks = [np.abs(aug.silence_clip(rng, bank())).max() for _ in range(200)]
    assert min(peaks) < 1e-3 and max(peaks) > 0.3


def test_shift_never_pushes_the_word_out_of_the_window():
    """A wide shift moves the spoken part anywhere inside the clip, never past its edges."""
    y = np.zeros(16000, np.float32)
    y[6000:10000] = np.sin(np.arange(4000) * 0.3)          # the "word": 250 ms of tone
    config = aug.AugmentConfig(shift_ms=400, gain_db=(0, 0), noise_prob=0, reverb_prob=0)
    starts, ends = [], []
    for seed in range(200):
        out = aug.augment(y, np.random.default_rng(seed), (), config)
        start, end = aug.active_region(out)
        assert 0 <= start and end <= 16000
        assert abs(float(np.sum(out ** 2)) - float(np.sum(y ** 2))) < 1e-2 * float(np.sum(y ** 2))
        starts.append(start)
        ends.append(end)
    assert min(starts) == 0 and max(ends) == 16000          # both edges reached, not crossed


def test_microphone_colours_the_spectrum_reproducibly():
    from scipy.signal import welch
    y = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    a = aug.microphone(y, np.random.default_rng(5))
    assert np.array_equal(a, aug.microphone(y, np.random.default_rng(5)))
    assert a.shape == y.shape and np.isfinite(a).all()
    f, before = welch(y, 16000)
    _, after = welch(a, 16000)
    change = 10 * np.log10(after / before)
    assert change[f > 7900].max() < -6          # band-limited above the low-pass corner
    assert change.max() - change.min() > 10     # not a flat gain


def test_microphone_off_by_default():
    y = np.random.default_rng(2).standard_normal(16000).astype(np.float32) * 0.1
    config = aug.AugmentConfig(noise_prob=0, reverb_prob=0)
    with_mic = aug.AugmentConfig(noise_prob=0, reverb_prob=0, mic_prob=1.0)
    plain = aug.augment(y, np.random.default_rng(3), (), config)
    assert np.array_equal(plain, aug.augment(y, np.random.default_rng(3), (), config))
    assert not np.allclose(plain, aug.augment(y, np.random.default_rng(3), (), with_mic))


def test_silence_dc_offsets_span_both_signs_steps_and_bare_offsets():
    """Microphones have DC offsets and steps at start-up; the front end does not remove them,
    so `_silence_` must show them: constant or stepped, with and without noise on top."""
    rng = np.random.default_rng(0)
    clips = [aug.silence_clip(rng, bank(), dc_prob=1.0) for _ in range(300)]
    ends = np.array([np.median(y[-2000:]) for y in clips])
    starts = np.array([np.median(y[:100]) for y in clips])
    assert (ends < -0.8).any() and (ends > 0.8).any()            # most of full scale, both signs
    assert np.mean(np.abs(ends) > 0.05) > 0.8                     # nearly all carry an offset
    stepped = np.abs(ends - starts) > 0.05
    assert 0.2 < np.mean(stepped) < 0.8                           # steps and constant offsets
    bare = [np.ptp(y[-2000:]) == 0 for y in clips]
    assert 0.1 < np.mean(bare) < 0.6                              # bare offsets and noisy ones
    assert all(np.abs(y).max() <= 1.0 for y in clips)             # clipped as an ADC would


def test_silence_without_dc_prob_is_as_before():
    a = [aug.silence_clip(np.random.default_rng(s), bank()) for s in range(50)]
    b = [aug.silence_clip(np.random.default_rng(s), bank(), dc_prob=0.0) for s in range(50)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert max(abs(float(np.mean(y))) for y in a) < 0.02


def test_dc_offset_on_speech_keeps_the_word_unclipped():
    """A share of every class gets an offset; the word is scaled into the room left, not cut."""
    config = aug.AugmentConfig(shift_ms=0, gain_db=(0, 0), noise_prob=0, reverb_prob=0,
                               dc_prob=1.0)
    y = clip() * 3                                               # a loud word, peak ~0.9
    offsets, whole = [], 0
    for seed in range(100):
        out = aug.augment(y, np.random.default_rng(seed), (), config)
        offset = float(np.median(out[-1000:]))
        offsets.append(offset)
        assert np.abs(out).max() <= 1.0
        if np.ptp(np.r_[out[:6000], out[10000:]]) == 0:          # constant offset: subtract it
            word = out - offset
            scale = np.abs(word).max() / np.abs(y).max()
            assert 0 < scale <= 1 and np.allclose(word, y * scale, atol=1e-5)  # same word, whole
            whole += 1
    offsets = np.array(offsets)
    assert (offsets < -0.5).any() and (offsets > 0.5).any()
    assert np.mean(np.abs(offsets) > 0.02) > 0.9
    assert whole > 30


def test_dc_offset_off_by_default():
    config = aug.AugmentConfig(noise_prob=0, reverb_prob=0)
    assert config.dc_prob == 0.0
    out = aug.augment(clip(), np.random.default_rng(4), (), config)
    assert abs(float(np.median(out))) < 1e-6


def test_time_masks_blank_whole_frames_of_every_example_reproducibly():
    x = np.random.default_rng(1).normal(size=(300, 49, 10)) + 5.0    # no frame is 0 by chance
    masked = aug.time_masks(x.copy(), np.random.default_rng(2), masks=2)
    blank = (masked == 0).all(axis=2)
    assert not ((masked == 0).any(axis=2) & ~blank).any()       # whole frames, every coefficient
    per_example = blank.sum(axis=1)
    assert per_example.min() >= 1 and per_example.max() <= 10     # 2 spans of 1..5 frames
    np.testing.assert_array_equal(masked[~blank], x[~blank])        # the rest untouched
    again = aug.time_masks(x.copy(), np.random.default_rng(2), masks=2)
    np.testing.assert_array_equal(again, masked)
    assert (aug.time_masks(x.copy(), np.random.default_rng(2), masks=0) == x).all()


def test_word_part_end_keeps_only_the_start_of_the_word_at_the_end_of_the_window():
    y = clip()                                   # speech at samples 6000-10000
    quiet = aug.AugmentConfig(noise_prob=0, reverb_prob=0, gain_db=(0.0, 0.0))
    rng = np.random.default_rng(3)
    for _ in range(20):
        out = aug.word_part(y, rng, (), quiet, "end")
        spoken = np.flatnonzero(np.abs(out) > 1e-6)
        assert len(out) == len(y)
        assert 100 * 16 - 160 <= spoken[-1] - spoken[0] + 1 <= 250 * 16     # 100-250 ms of it
        assert len(y) - 100 * 16 - 1 <= spoken[-1] < len(y)                  # ends in the last 100 ms
        start = np.flatnonzero(np.abs(y) > 1e-6)[0]
        np.testing.assert_allclose(out[spoken[0]:spoken[0] + 100], y[start:start + 100], atol=1e-6)


def test_word_part_start_keeps_only_the_end_of_the_word_at_the_start_of_the_window():
    y = clip()                                   # speech at samples 6000-10000
    quiet = aug.AugmentConfig(noise_prob=0, reverb_prob=0, gain_db=(0.0, 0.0))
    rng = np.random.default_rng(4)
    last = np.flatnonzero(np.abs(y) > 1e-6)[-1]
    for _ in range(20):
        out = aug.word_part(y, rng, (), quiet, "start")
        spoken = np.flatnonzero(np.abs(out) > 1e-6)
        assert spoken[0] <= 100 * 16 + 160 and spoken[-1] - spoken[0] + 1 <= 400 * 16
        np.testing.assert_allclose(out[spoken[-1] - 99:spoken[-1] + 1], y[last - 99:last + 1],
                                   atol=1e-6)


def test_speed_perturb_scales_pitch_and_duration_and_keeps_the_word_centred():
    t = np.arange(6000)
    y = np.zeros(16000, np.float32)
    y[5000:11000] = 0.5 * np.sin(2 * np.pi * 440 * t / 16000)
    start, end = aug.active_region(y)
    assert np.array_equal(aug.speed_perturb(y, 1.0), y)
    for factor in (0.9, 1.1):
        z = aug.speed_perturb(y, factor)
        assert z.shape == y.shape and z.dtype == np.float32
        pitch = np.argmax(np.abs(np.fft.rfft(z)))       # 1 Hz bins over 1 s
        assert abs(pitch - 440 * factor) <= 2
        s, e = aug.active_region(z)
        assert abs((e - s) - (end - start) / factor) <= 2 * 160
        assert abs((s + e) / 2 - (start + end) / 2) <= 160


class CountingRng:
    """A numpy Generator that counts the draws made from it."""
    def __init__(self, seed):
        self.generator, self.calls = np.random.default_rng(seed), 0

    def __getattr__(self, name):
        method = getattr(self.generator, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return method(*args, **kwargs)
        return counted


@pytest.mark.parametrize("option", ["speed_prob", "formant_prob"])
def test_an_optional_perturbation_is_off_by_default_and_drawn_when_asked(option):
    """Off (the default) it draws nothing, so earlier recipes reproduce; at 1 it changes every
    example and keeps it a bounded clip of the same length."""
    rng = np.random.default_rng(3)
    plain = aug.augment(clip(), np.random.default_rng(5), bank())
    assert np.array_equal(plain, aug.augment(clip(), np.random.default_rng(5), bank(),
                                             aug.AugmentConfig(**{option: 0.0})))
    draws = []
    for p in (0.0, 1e-12):          # never taken at 1e-12, but its chance is drawn
        counting = CountingRng(5)
        aug.augment(clip(), counting, bank(), aug.AugmentConfig(**{option: p}))
        draws.append(counting.calls)
    assert draws[1] == draws[0] + 1
    for s in rng.integers(0, 1000, 5):
        changed = aug.augment(clip(), np.random.default_rng(s), bank(),
                              aug.AugmentConfig(noise_prob=0, **{option: 1.0}))
        assert changed.shape == plain.shape and np.abs(changed).max() <= 1.0
        assert not np.array_equal(changed, aug.augment(clip(), np.random.default_rng(s), bank(),
                                                       aug.AugmentConfig(noise_prob=0)))


def test_mixup_mixes_examples_and_targets_alike_each_mostly_itself():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 49, 10)).astype(np.float32)
    t = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 64)]
    mixed_x, mixed_t = aug.mixup(x, t, np.random.default_rng(3), alpha=0.4)
    again = aug.mixup(x, t, np.random.default_rng(3), alpha=0.4)
    assert (again[0] == mixed_x).all() and (again[1] == mixed_t).all()
    np.testing.assert_allclose(mixed_t.sum(axis=1), 1, rtol=1e-6)
    # every mixed example is lam * itself + (1 - lam) * one other example, lam >= 0.5
    for i in range(64):
        lams = [_fit_lam(mixed_x[i], x[i], x[j]) for j in range(64)]
        residual = [np.abs(mixed_x[i] - (lam * x[i] + (1 - lam) * x[j])).max()
                    for j, lam in enumerate(lams)]
        j = int(np.argmin(residual))
        lam = lams[j]
        assert residual[j] < 1e-4 and 0.5 <= lam <= 1.0
        np.testing.assert_allclose(mixed_t[i], lam * t[i] + (1 - lam) * t[j], atol=1e-5)
    assert not np.allclose(mixed_x, x)


def test_mixup_leaves_kept_rows_alone_and_out_of_other_mixes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 49, 10)).astype(np.float32)
    t = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 40)]
    kept = np.arange(40) % 4 == 0
    mixed_x, mixed_t = aug.mixup(x, t, np.random.default_rng(3), alpha=0.4, kept=kept)
    assert (mixed_x[kept] == x[kept]).all() and (mixed_t[kept] == t[kept]).all()
    for i in np.flatnonzero(~kept):     # each other row is itself plus a row that is not kept
        if (mixed_x[i] == x[i]).all():
            continue                    # its own partner
        residual = [np.abs(mixed_x[i] - (lam * x[i] + (1 - lam) * x[j])).max()
                    for j, lam in ((j, _fit_lam(mixed_x[i], x[i], x[j])) for j in range(40))]
        assert not kept[int(np.argmin(residual))] and min(residual) < 1e-4
    assert not np.allclose(mixed_x[~kept], x[~kept])


def _fit_lam(mixed, a, b):
    d = (a - b).ravel()
    return 1.0 if not d.any() else float(np.dot((mixed - b).ravel(), d) / np.dot(d, d))


def vowel(f0=120, formants=((700, 90), (1200, 110), (2500, 150)), seconds=0.5):
    """Source-filter vowel: a glottal pulse train through one resonator per formant."""
    from scipy.signal import lfilter
    pulses = np.zeros(int(16000 * seconds))
    pulses[::int(16000 / f0)] = 1
    poles = np.array([1.0])
    for freq, bandwidth in formants:
        r = np.exp(-np.pi * bandwidth / 16000)
        poles = np.convolve(poles, [1, -2 * r * np.cos(2 * np.pi * freq / 16000), r * r])
    y = lfilter([1], poles, pulses)
    return (y / np.abs(y).max()).astype(np.float32)


def test_formant_warp_moves_the_envelope_and_keeps_the_pitch():
    import librosa
    y = vowel()
    freqs = librosa.fft_frequencies(sr=16000, n_fft=2048)

    def centroid_and_pitch(x):
        spectrum = np.abs(librosa.stft(x[1000:-1000], n_fft=2048, center=False)).mean(axis=1)
        pitch = np.median(librosa.yin(x, fmin=60, fmax=400, sr=16000))
        return (spectrum * freqs).sum() / spectrum.sum(), pitch

    base_centroid, base_pitch = centroid_and_pitch(y)
    for factor in (0.85, 1.2):
        centroid, pitch = centroid_and_pitch(aug.warp_formants(y, factor))
        assert abs(pitch / base_pitch - 1) < 0.02                    # same speaker pitch
        moved = (centroid / base_centroid - 1) / (factor - 1)
        assert 0.6 < moved < 1.4          # the envelope moved the right way, by about factor


def test_a_training_run_hands_its_augmentation_options_to_augment():
    from hark.training import train
    cfg = train.TrainConfig(data=[], shift_ms=250, mic_prob=0.5, dc_prob=0.2, speed_prob=0.3,
                            formant_prob=0.4)
    got = train._augment_config(cfg)
    assert (got.shift_ms, got.mic_prob, got.dc_prob, got.speed_prob, got.formant_prob,
            got.room_prob) == (250, 0.5, 0.2, 0.3, 0.4, 0.0)


def test_lead_in_puts_another_words_end_before_the_word_and_keeps_the_word_whole():
    """The word's samples move later intact; before them, 100-600 ms of nothing, and before
    that the lead word's last 100-400 ms (scaled), never its start."""
    y = np.zeros(16000, np.float32)
    y[3200:8000] = np.sin(np.arange(4800) * 0.3 + 0.5)     # the word: 200-500 ms
    lead = np.zeros(16000, np.float32)
    lead[4000:12000] = np.linspace(0.1, 1.0, 8000)         # rising: its end is its loud part
    gaps, pieces = [], []
    for seed in range(100):
        out = aug.with_lead_in(y, lead, np.random.default_rng(seed))
        assert out.shape == y.shape
        at = int(np.flatnonzero(out == y[3200])[-1])      # where the word starts now
        assert at >= 3200 and np.array_equal(out[at:at + 4800], y[3200:8000])
        heard = np.flatnonzero(np.abs(out[:at]) > 0)
        gap = (at - heard[-1] - 1) / 16
        assert 100 <= gap <= 600
        piece = out[heard[0]:heard[-1] + 1]
        assert np.all(np.diff(piece) > 0)                # a rising ramp: the lead's end, whole
        gaps.append(gap)
        pieces.append(len(piece) / 16)
    assert max(gaps) - min(gaps) > 300 and max(pieces) - min(pieces) > 200


def test_lead_in_leaves_a_word_with_no_room_before_it_alone():
    y = np.sin(np.arange(16000, dtype=np.float32) * 0.3)   # speech filling the whole window
    assert aug.with_lead_in(y, clip(), np.random.default_rng(0)) is y
