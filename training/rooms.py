"""Simulated rooms: impulse responses of shoebox rooms by the image-source method
(pyroomacoustics), for far-field augmentation and for measuring what a microphone across a
room hears. A board on a shelf hears its user 1-3 m away in a room that rings for 0.2-0.7 s;
the training clips were recorded at arm's length.
"""
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
DISTANCE_M = (1.0, 3.0)     # source to microphone
RT60_S = (0.2, 0.7)         # reverberation time
MAX_ORDER = 40              # image-source reflections kept (the late tail is cut at 1.2 x RT60)
TRAINING_SEED = 0           # the rooms training draws from (hark train --room-prob)
MEASUREMENT_SEED = 1        # the rooms measurements use (crossval --rooms, stream --rooms)


@lru_cache(maxsize=2)
def impulse_responses(n: int, seed: int, sample_rate: int = SAMPLE_RATE) -> tuple:
    """n room impulse responses (float32, unit energy, the direct path first), each from a
    random room (3-8 x 3-6 x 2.4-3.5 m), RT60 and source 1-3 m from the microphone; the same
    seed gives the same rooms."""
    try:
        import pyroomacoustics as pra
    except ImportError as exc:
        raise RuntimeError("simulated rooms need pyroomacoustics: `make venv-dev` installs it "
                           "(or `pip install -r requirements/dev.txt`)") from exc
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        dims = np.array([rng.uniform(3, 8), rng.uniform(3, 6), rng.uniform(2.4, 3.5)])
        rt60 = rng.uniform(*RT60_S)
        try:
            absorption, order = pra.inverse_sabine(rt60, dims)
        except ValueError:      # this room cannot ring that long or that briefly
            continue
        mic = np.array([rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5),
                        rng.uniform(0.7, 1.5)])
        source = _source_near(mic, dims, rng.uniform(*DISTANCE_M), rng)
        if source is None:
            continue
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption),
                           max_order=min(order, MAX_ORDER))
        room.add_source(source)
        room.add_microphone(mic)
        room.compute_rir()
        h = np.asarray(room.rir[0][0], np.float32)
        direct = int(np.argmax(np.abs(h)))
        h = h[max(0, direct - 8):][: int(sample_rate * rt60 * 1.2)]
        out.append(h / np.sqrt(np.sum(np.square(h, dtype=np.float64))).astype(np.float32))
    return tuple(out)


def _source_near(mic, dims, distance, rng, tries=50):
    """A point `distance` from the microphone, inside the room with 0.3 m to spare; None if
    `tries` random directions all leave it."""
    for _ in range(tries):
        azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(-0.3, 0.5)
        p = mic + distance * np.array([np.cos(azimuth) * np.cos(elevation),
                                       np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
        if np.all(p > 0.3) and np.all(p < dims - 0.3):
            return p
    return None


def in_room(y: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """y as the microphone hears it in the room: convolved with the impulse response (its
    direct path at the start, so the word stays where it was in the window), cut to y's
    length, at y's RMS level (gain is another augmentation's job)."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(y, rir)[: len(y)]
    level = np.sqrt(np.mean(np.square(y, dtype=np.float64)))
    wet_level = np.sqrt(np.mean(np.square(wet, dtype=np.float64)))
    return (wet * (level / wet_level if wet_level > 0 else 0.0)).astype(np.float32)
