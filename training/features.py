"""MFCC features: the one definition shared by training, export and the device.

librosa is the reference. The front end is streaming-compatible: frames start at
sample 0 (no centering), the log floor is absolute (no top-dB clipping) and the
per-coefficient normalisation is a constant of the model, never of the clip.
"""
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class FeatureSpec:
    sample_rate: int = 16000
    clip_samples: int = 16000      # one model window: 1 s
    frame_length: int = 480        # 30 ms analysis window (MLPerf Tiny KWS)
    hop_length: int = 320          # 20 ms hop
    n_fft: int = 512
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 4000.0
    n_mfcc: int = 10
    log_floor: float = 1e-7        # absolute mel-power floor (-70 dB), streaming-safe
    window: str = "hann"

    @property
    def n_frames(self) -> int:
        return 1 + (self.clip_samples - self.n_fft) // self.hop_length

    @property
    def shape(self) -> tuple:
        return (self.n_frames, self.n_mfcc)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


DEFAULT_SPEC = FeatureSpec()


@dataclass
class Normalisation:
    """Fixed per-coefficient affine map learnt from training data: (mfcc - mean) / std."""
    mean: np.ndarray = field(default_factory=lambda: np.zeros(DEFAULT_SPEC.n_mfcc, np.float32))
    std: np.ndarray = field(default_factory=lambda: np.ones(DEFAULT_SPEC.n_mfcc, np.float32))

    def apply(self, mfcc: np.ndarray) -> np.ndarray:
        return ((mfcc - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalisation":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))

    @classmethod
    def fit(cls, mfccs: np.ndarray) -> "Normalisation":
        flat = mfccs.reshape(-1, mfccs.shape[-1])
        return cls(flat.mean(axis=0).astype(np.float32), (flat.std(axis=0) + 1e-6).astype(np.float32))


def fit_clip(y: np.ndarray, spec: FeatureSpec = DEFAULT_SPEC) -> np.ndarray:
    """Pad with zeros or cut so the clip is exactly one model window."""
    y = np.asarray(y, np.float32)
    if len(y) >= spec.clip_samples:
        return y[: spec.clip_samples]
    return np.pad(y, (0, spec.clip_samples - len(y)))


def mel_power(y: np.ndarray, spec: FeatureSpec = DEFAULT_SPEC) -> np.ndarray:
    """Mel power spectrogram, shape (..., n_mels, frames), for float audio in [-1, 1)."""
    import librosa

    return librosa.feature.melspectrogram(
        y=np.asarray(y, np.float32), sr=spec.sample_rate, n_fft=spec.n_fft,
        hop_length=spec.hop_length, win_length=spec.frame_length, window=spec.window,
        center=False, power=2.0, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax)


def mfcc(y: np.ndarray, spec: FeatureSpec = DEFAULT_SPEC) -> np.ndarray:
    """Reference MFCC, shape (..., frames, n_mfcc) for audio (..., samples): librosa, no
    centering, no top-dB clip."""
    import librosa

    log_mel = librosa.power_to_db(mel_power(y, spec), ref=1.0, amin=spec.log_floor, top_db=None)
    coeffs = librosa.feature.mfcc(S=log_mel, n_mfcc=spec.n_mfcc, dct_type=2, norm="ortho")
    return np.swapaxes(coeffs, -1, -2).astype(np.float32)


def clip_features(y: np.ndarray, spec: FeatureSpec = DEFAULT_SPEC) -> np.ndarray:
    """MFCC of exactly one model window, shape spec.shape."""
    return mfcc(fit_clip(y, spec), spec)


def reference_tables(spec: FeatureSpec = DEFAULT_SPEC) -> dict:
    """Float tables of the reference front end, for the exporter to quantise into the blob.

    window: (n_fft,) periodic Hann of frame_length centred in n_fft, as librosa pads it.
    mel: (n_mels, n_fft//2+1) filter bank. dct: (n_mfcc, n_mels) orthonormal DCT-II.
    """
    import librosa
    import scipy.fft

    window = librosa.filters.get_window(spec.window, spec.frame_length, fftbins=True)
    window = librosa.util.pad_center(window, size=spec.n_fft)
    mel = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels,
                              fmin=spec.fmin, fmax=spec.fmax)
    dct = scipy.fft.dct(np.eye(spec.n_mels), type=2, norm="ortho", axis=0)[: spec.n_mfcc]
    return {"window": window.astype(np.float64), "mel": mel.astype(np.float64),
            "dct": dct.astype(np.float64)}


def batch_features(clips, spec: FeatureSpec = DEFAULT_SPEC, chunk: int = 512) -> np.ndarray:
    """Reference MFCC for many 1 s clips at once, shape (n, n_frames, n_mfcc)."""
    out = np.empty((len(clips), *spec.shape), np.float32)
    for start in range(0, len(clips), chunk):
        block = np.stack([fit_clip(y, spec) for y in clips[start:start + chunk]])
        out[start:start + len(block)] = mfcc(block, spec)
    return out
