"""Augmentation of 1 s clips: speed, vocal-tract length, time shift, gain, background noise at
random SNR, reverb or a simulated room, DC offset, another word's end before the word.

Everything draws from the numpy Generator it is given, so a seed reproduces a run.
"""
from dataclasses import dataclass, replace

import numpy as np

from . import rooms


@dataclass
class AugmentConfig:
    shift_ms: float = 100.0          # uniform time shift in [-shift_ms, +shift_ms]
    gain_db: tuple = (-12.0, 6.0)    # uniform gain range
    noise_prob: float = 0.7
    snr_db: tuple = (5.0, 30.0)      # uniform SNR range when noise is added
    reverb_prob: float = 0.2
    rt60_s: tuple = (0.1, 0.6)
    mic_prob: float = 0.0            # chance of a random microphone/channel response
    dc_prob: float = 0.0             # chance of a random DC offset (constant or a step)
    speed_prob: float = 0.0          # chance of a speed change (speed_perturb)
    speed_range: tuple = (0.9, 1.1)  # uniform speed factor range
    formant_prob: float = 0.0        # chance of a vocal-tract-length warp (warp_formants)
    room_prob: float = 0.0           # chance of a simulated room (instead of the synthetic reverb)
    rooms: tuple = ()                # its impulse responses (rooms.impulse_responses)


def speed_perturb(y: np.ndarray, factor: float) -> np.ndarray:
    """y played `factor` times as fast (tempo, pitch and formants together, as resampling a
    recording does: ASR's speed perturbation, a cheap stand-in for other speakers), the same
    length, its spoken part kept centred where it was."""
    from scipy.signal import resample_poly
    down = int(round(100 * factor))
    if down == 100:
        return y
    fast = resample_poly(y, 100, down).astype(np.float32)
    start, end = active_region(y)
    centre = (start + end) * 50 // down          # the spoken part's centre, resampled
    out = np.zeros_like(y)
    at = (start + end) // 2 - centre             # where fast[0] lands in out
    lo, hi = max(0, at), min(len(y), at + len(fast))
    out[lo:hi] = fast[lo - at:hi - at]
    return out


FORMANT_LIFTER = 24          # cepstral coefficients kept as the envelope (16 kHz, 512-point)
FORMANT_RANGE = (0.82, 1.2)  # adult male .. child-like tract length ratios


def formant_factor(rng: np.random.Generator) -> float:
    """A warp factor for warp_formants, log-uniform over FORMANT_RANGE."""
    return float(np.exp(rng.uniform(*np.log(FORMANT_RANGE))))


def warp_formants(y, factor: float):
    """Move the spectral envelope (the formants: vocal-tract length) by factor and keep
    the pitch: the envelope is the low-quefrency part of each frame's real cepstrum, the
    harmonics and phase stay where they were. factor > 1 sounds like a shorter tract."""
    import librosa
    spec = librosa.stft(y, n_fft=512, hop_length=128)
    log_mag = np.log(np.abs(spec) + 1e-7)
    cepstrum = np.fft.irfft(log_mag, axis=0)
    cepstrum[FORMANT_LIFTER:-FORMANT_LIFTER] = 0
    envelope = np.fft.rfft(cepstrum, axis=0).real
    bins = np.arange(spec.shape[0], dtype=np.float64)
    warped = np.stack([np.interp(bins / factor, bins, column) for column in envelope.T], axis=1)
    spec = spec * np.exp(warped - envelope)
    return librosa.istft(spec, hop_length=128, length=len(y)).astype(np.float32)


def time_shift(y: np.ndarray, samples: int) -> np.ndarray:
    """Shift right (positive) or left, filling with zeros: no wrap-around speech."""
    out = np.zeros_like(y)
    if samples >= 0:
        out[samples:] = y[: len(y) - samples]
    else:
        out[:samples] = y[-samples:]
    return out


def active_region(y, frame=160, below_peak_db=30.0):
    """(start, end) samples of the part of a clip within below_peak_db of its loudest 10 ms."""
    n = len(y) // frame
    if n == 0:
        return 0, len(y)
    e = np.sqrt(np.mean(np.square(y[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    loud = np.flatnonzero(e >= e.max() * 10 ** (-below_peak_db / 20))
    return int(loud[0] * frame), int((loud[-1] + 1) * frame)


def noise_segment(noise_bank, length: int, rng: np.random.Generator) -> np.ndarray:
    source = noise_bank[rng.integers(len(noise_bank))]
    if len(source) <= length:
        return np.resize(source, length).astype(np.float32)
    start = rng.integers(len(source) - length)
    return source[start:start + length]


def add_noise(y, noise, snr_db: float) -> np.ndarray:
    speech = np.sqrt(np.mean(y ** 2)) + 1e-9
    level = np.sqrt(np.mean(noise ** 2)) + 1e-9
    return y + noise * (speech / level) * 10 ** (-snr_db / 20)


def reverb(y, rng: np.random.Generator, rt60_s: float, sample_rate: int = 16000) -> np.ndarray:
    """Convolve with a synthetic room: exponentially decaying noise tail after a direct path."""
    from scipy.signal import fftconvolve

    n = int(rt60_s * sample_rate)
    t = np.arange(n) / sample_rate
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)  # -60 dB at rt60
    ir[0] = 1.0
    ir /= np.sqrt(np.sum(ir ** 2))
    wet = fftconvolve(y, ir)[: len(y)]
    peak_in, peak_out = np.max(np.abs(y)) + 1e-9, np.max(np.abs(wet)) + 1e-9
    return wet * (peak_in / peak_out)


def microphone(y, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """A random microphone/channel colouring: band limits and two resonances. Real clips come
    from many laptop and phone microphones; synthetic speech is studio-flat, and a model can
    learn that difference instead of the word."""
    from scipy.signal import butter, sosfilt

    nyq = sample_rate / 2
    sos = [butter(2, rng.uniform(60, 400) / nyq, "highpass", output="sos"),
           butter(2, min(rng.uniform(3000, 7800), nyq * 0.98) / nyq, "lowpass", output="sos")]
    for _ in range(2):  # peaking bands of +-8 dB: a resonance or a dip in the speech range
        f0, q, gain = rng.uniform(250, 3500), rng.uniform(0.7, 3.0), rng.uniform(-8, 8)
        sos.append(_peaking(f0 / sample_rate, q, gain))
    wet = sosfilt(np.concatenate(sos), y)
    peak_in, peak_out = np.max(np.abs(y)) + 1e-9, np.max(np.abs(wet)) + 1e-9
    return (wet * (peak_in / peak_out)).astype(np.float32)


def _peaking(f, q, gain_db):
    """One peaking-EQ biquad (RBJ cookbook) as a second-order section; f in cycles/sample."""
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * f
    alpha = np.sin(w) / (2 * q)
    b = [1 + alpha * a, -2 * np.cos(w), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w), 1 - alpha / a]
    return np.array([[*(np.asarray(b) / den[0]), 1.0, den[1] / den[0], den[2] / den[0]]])


def dc_level(length: int, rng: np.random.Generator, most: float = 1.0) -> np.ndarray:
    """A random DC offset for a clip: up to `most` of full scale, either sign, constant or (half
    the time) a step at a random sample from zero or another level, as a microphone with an
    offset gives when audio starts. The front end has no DC removal, so the lowest mel bands
    carry the offset and the model must learn that it is not speech."""
    level = rng.uniform(0.0, most) * rng.choice((-1.0, 1.0))
    dc = np.full(length, level, np.float32)
    if rng.random() < 0.5:
        before = 0.0 if rng.random() < 0.5 else rng.uniform(-most, most)
        dc[: rng.integers(length)] = before
    return dc


def with_dc(y, rng: np.random.Generator, most: float = 0.9) -> np.ndarray:
    """y with a random DC offset (dc_level), scaled down where offset + signal would leave
    [-1, 1]: the word stays whole instead of half-clipped."""
    dc = dc_level(len(y), rng, most)
    room = 1.0 - np.max(np.abs(dc))
    peak = np.max(np.abs(y)) + 1e-9
    return (y * min(1.0, room / peak) + dc).astype(np.float32)


def augment(y, rng: np.random.Generator, noise_bank=(), config: AugmentConfig = AugmentConfig(),
            sample_rate: int = 16000) -> np.ndarray:
    """One random variant of a clip (same length), clipped to [-1, 1]."""
    y = np.asarray(y, np.float32)
    if config.speed_prob and rng.random() < config.speed_prob:
        y = speed_perturb(y, rng.uniform(*config.speed_range))
    if config.formant_prob and rng.random() < config.formant_prob:
        y = warp_formants(y, formant_factor(rng))
    shift = int(rng.uniform(-config.shift_ms, config.shift_ms) * sample_rate / 1000)
    if shift:  # never push the spoken part out of the window: its label would be a lie
        start, end = active_region(y)
        shift = min(max(shift, -start), len(y) - end)
    y = time_shift(y, shift)
    if config.room_prob and config.rooms and rng.random() < config.room_prob:
        y = rooms.in_room(y, config.rooms[rng.integers(len(config.rooms))])
    elif rng.random() < config.reverb_prob:
        y = reverb(y, rng, rng.uniform(*config.rt60_s), sample_rate)
    if config.mic_prob and rng.random() < config.mic_prob:
        y = microphone(y, rng, sample_rate)
    y = y * 10 ** (rng.uniform(*config.gain_db) / 20)
    if len(noise_bank) and rng.random() < config.noise_prob:
        y = add_noise(y, noise_segment(noise_bank, len(y), rng), rng.uniform(*config.snr_db))
    if config.dc_prob and rng.random() < config.dc_prob:
        y = with_dc(y, rng)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def word_part(y, rng: np.random.Generator, noise_bank=(), config: AugmentConfig = AugmentConfig(),
              edge: str = "end", sample_rate: int = 16000) -> np.ndarray:
    """What a streaming window holds while a word enters or leaves it: edge "end", the first
    100-250 ms of the clip's spoken part ending up to 100 ms before the window's end (a word
    just begun); edge "start", its last 100-400 ms starting up to 100 ms after the window's
    start (a word nearly gone). Nothing else is spoken; then augment() without its shift. As
    `_unknown_` it teaches a model not to fire on part of a word: the shift of augment() keeps
    every training word whole in the window, a stream does not."""
    y = np.asarray(y, np.float32)
    start, end = active_region(y)
    margin = int(rng.uniform(0, 100) * sample_rate / 1000)
    out = np.zeros_like(y)
    if edge == "end":
        piece = y[start:min(end, start + int(rng.uniform(100, 250) * sample_rate / 1000))]
        at = len(y) - margin - len(piece)
        out[max(0, at):max(0, at) + len(piece)] = piece[max(0, -at):]
    else:
        piece = y[max(start, end - int(rng.uniform(100, 400) * sample_rate / 1000)):end]
        piece = piece[:len(y) - margin]
        out[margin:margin + len(piece)] = piece
    return augment(out, rng, noise_bank, replace(config, shift_ms=0.0), sample_rate)


def with_lead_in(y, lead, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """Clip y with the end of another word before it: the last 100-400 ms of `lead`'s spoken
    part, ending 100-600 ms before y's spoken part starts, at -6 to +6 dB against y. A command
    said right after the wake phrase reaches the window like this, while every training word
    is otherwise alone in it. y's spoken part moves later to make room and stays whole in the
    window (its label holds); the lead-in is cut short where the window has no room for it."""
    y = np.asarray(y, np.float32)
    lead = np.asarray(lead, np.float32)
    ms = sample_rate // 1000
    # 20 dB under the peak finds the word in a noisy clip, where 30 dB (augment's shift) often
    # spans the whole window; the rest of such a clip is noise, and may be shifted out
    start, end = active_region(y, below_peak_db=20.0)
    a, b = active_region(lead, below_peak_db=20.0)
    piece = lead[max(a, b - int(rng.uniform(100, 400) * ms)):b]
    gap = int(rng.uniform(100, 600) * ms)
    at = min(len(y) - (end - start), max(start, gap + len(piece)))   # where y's word starts
    room = at - gap
    if room < 50 * ms:      # a word too long to leave room even for a sliver
        return y
    piece = piece[len(piece) - min(len(piece), room):]
    level = np.sqrt(np.mean(y[start:end] ** 2)) / (np.sqrt(np.mean(piece ** 2)) + 1e-9)
    gain = level * 10 ** (rng.uniform(-6.0, 6.0) / 20)
    out = time_shift(y, at - start)
    out[at - gap - len(piece):at - gap] += piece * gain
    return out


def silence_count(n_clips: int, labels) -> int:
    """How many `_silence_` clips to add to n_clips of the other labels: one class's worth."""
    return max(1, n_clips // max(1, len(labels) - 1))


def silence_clip(rng: np.random.Generator, noise_bank=(), length: int = 16000,
                 dc_prob: float = 0.0) -> np.ndarray:
    """A `_silence_` example: background noise at a log-uniform level from near-digital
    silence to very loud, or (sometimes) a faint electrical hiss when there is no bank. With
    chance dc_prob it sits on a DC offset of up to full scale (dc_level), a third of those
    with no noise at all, clipped as an ADC would."""
    if not len(noise_bank) or rng.random() < 0.1:
        y = rng.standard_normal(length).astype(np.float32)
    else:
        y = noise_segment(noise_bank, length, rng).astype(np.float32)
    y = y / (np.max(np.abs(y)) + 1e-9)
    level = 10 ** rng.uniform(-4.0, 0.0)  # -80 dBFS .. 0 dBFS peak
    y = y * level
    if dc_prob and rng.random() < dc_prob:
        y = dc_level(length, rng) + (0.0 if rng.random() < 1 / 3 else y)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def mixup(x: np.ndarray, targets: np.ndarray, rng: np.random.Generator, alpha: float,
          kept: np.ndarray = None):
    """mixup (Zhang et al. 2018) on normalised features and their target distributions: each
    example mixed with a random other one of the batch given, lam ~ Beta(alpha, alpha) folded
    to >= 0.5 so that every mixed example is mostly itself. Targets must be linear in the
    loss (probability rows, packed distillation targets). Rows where the boolean mask `kept`
    is set stay as they are and are no other row's partner (`hark train --mixup-keep-silence`).
    Returns new arrays."""
    n = len(x)
    lam = rng.beta(alpha, alpha, n).astype(np.float32)
    lam = np.maximum(lam, 1 - lam)
    if kept is None:
        other = rng.permutation(n)
    else:
        other, mixed = np.arange(n), np.flatnonzero(~kept)
        other[mixed] = mixed[rng.permutation(len(mixed))]
        lam[kept] = 1.0
    mixed_x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[other]
    mixed_t = lam[:, None] * targets + (1 - lam[:, None]) * targets[other]
    return mixed_x.astype(np.float32), mixed_t.astype(np.float32)


def time_masks(x: np.ndarray, rng: np.random.Generator, masks: int, most: int = 5,
               fill: float = 0.0) -> np.ndarray:
    """SpecAugment's time masking on normalised feature frames (n, frames, coefficients), in
    place: per example, `masks` spans of 1..most frames set to `fill` (0: the coefficients'
    mean after normalisation), so that no single stretch of a word decides its label."""
    n, frames = x.shape[:2]
    position = np.arange(frames)
    for _ in range(masks):
        width = rng.integers(1, most + 1, n)
        start = rng.integers(0, frames - width + 1)
        x[(position >= start[:, None]) & (position < (start + width)[:, None])] = fill
    return x
