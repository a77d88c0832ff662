"""Reference features: shapes follow the spec; streaming-compatible definition."""
import numpy as np

from hark.training import features as F


def test_shape_follows_spec():
    spec = F.DEFAULT_SPEC
    assert spec.shape == (49, 10)
    y = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
    assert F.clip_features(y).shape == (49, 10)
    short = F.FeatureSpec(n_mfcc=13, hop_length=160)
    assert F.clip_features(y, short).shape == (short.n_frames, 13) == (97, 13)


def test_short_and_long_clips_fit_one_window():
    assert F.fit_clip(np.ones(100)).shape == (16000,)
    assert F.fit_clip(np.ones(20000)).shape == (16000,)


def test_no_clip_level_normalisation():
    """Features of a frame depend only on that frame's samples: a louder clip elsewhere
    must not change them (no top-dB clipping or per-clip normalisation)."""
    rng = np.random.default_rng(1)
    y = 0.01 * rng.standard_normal(16000).astype(np.float32)
    loud = y.copy()
    loud[12000:] *= 100
    a, b = F.clip_features(y), F.clip_features(loud)
    first_unaffected = (12000 // 320) - 2
    assert np.allclose(a[:first_unaffected], b[:first_unaffected], atol=1e-4)


def test_tables_reproduce_librosa():
    """The float tables the exporter quantises give the librosa reference exactly."""
    spec = F.DEFAULT_SPEC
    y = 0.3 * np.random.default_rng(2).standard_normal(16000).astype(np.float32)
    t = F.reference_tables(spec)
    frames = np.stack([y[i * spec.hop_length: i * spec.hop_length + spec.n_fft]
                       for i in range(spec.n_frames)]) * t["window"]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    log_mel = 10 * np.log10(np.maximum(power @ t["mel"].T, spec.log_floor))
    assert np.abs(log_mel @ t["dct"].T - F.clip_features(y)).max() < 1e-3


def test_batch_equals_single():
    rng = np.random.default_rng(3)
    ys = [0.2 * rng.standard_normal(n).astype(np.float32) for n in (16000, 9000, 17000)]
    batch = F.batch_features(ys)
    for i, y in enumerate(ys):
        assert np.allclose(batch[i], F.clip_features(y), atol=1e-4)


def test_normalisation_roundtrip():
    x = np.random.default_rng(4).normal(5, 3, (100, 49, 10)).astype(np.float32)
    n = F.Normalisation.fit(x)
    z = n.apply(x)
    assert abs(z.mean()) < 1e-3 and abs(z.std() - 1) < 1e-2
    assert np.allclose(F.Normalisation.from_dict(n.to_dict()).apply(x), z)
