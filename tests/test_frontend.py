"""Device front end (firmware/frontend.py in the real unix port) against the librosa
reference and against its numpy model (training/frontend_tables.py).

All device work runs in one MicroPython process per test; the figures printed here
(steps of difference, µs per frame) go into the README.
"""
import random

import numpy as np
import pytest
import soundfile as sf

from hark.training import frontend_tables as ft
from hark.training.evaluate import quantise
from hark.training.features import FeatureSpec, Normalisation, mfcc

SPEC = FeatureSpec()
N_CLIPS = 240
INPUT_SCALE = 8 / 255          # int8 covers +-4 std of the normalised features
INPUT_ZERO_POINT = -1          # what the converter picks for that symmetric range
MAX_STEPS = 1                  # device vs reference, int8 steps, any value of any clip
MEAN_STEPS = 0.012             # device vs reference, mean over all values

DEVICE_SETUP = """
import sys, gc, time
from array import array
import blob, frontend
b = blob.load(sys.argv[1])
fe = frontend.FrontEnd(b.meta, b.arrays)
del b
n_clips = int(sys.argv[3])
n = int(sys.argv[4])
pcm = array('h', bytes(2 * n))
row = fe.frame
def put(row):
    sys.stdout.write(row.hex())
"""

# each clip whole, reset in between: hex of all frames per line; then the minimum and
# median over clips of µs per frame (the minimum is robust to other jobs on the machine)
RUN_CLIPS = DEVICE_SETUP + """
us = []
with open(sys.argv[2], 'rb') as f:
    for c in range(n_clips):
        f.readinto(pcm)
        fe.reset()
        pos = 0
        frames = 0
        t0 = time.ticks_us()
        while pos < n:
            pos = fe.push(pcm, pos, n)
            if fe.ready:
                put(row)
                frames += 1
        us.append(time.ticks_diff(time.ticks_us(), t0) / frames)
        sys.stdout.write('\\n')
us.sort()
print(us[0], us[len(us) // 2])
"""

# every clip in every block pattern (0 = pseudo-random sizes), fed through memoryviews
RUN_BLOCKS = DEVICE_SETUP + """
patterns = [int(v) for v in sys.argv[5].split(',')]
mv = memoryview(pcm)
seed = 12345
with open(sys.argv[2], 'rb') as f:
    for c in range(n_clips):
        f.readinto(pcm)
        for size in patterns:
            fe.reset()
            pos = 0
            while pos < n:
                if size:
                    step = size
                else:
                    seed = (seed * 1103515245 + 12345) & 0x3FFFFFFF
                    step = 1 + seed % 700
                end = min(n, pos + step)
                p = 0
                sub = mv[pos:end]
                while p < end - pos:
                    p = fe.push(sub, p, end - pos)
                    if fe.ready:
                        put(row)
                pos = end
            sys.stdout.write('\\n')
"""

# heap use of the per-frame path: allocation while streaming many frames
RUN_ALLOC = DEVICE_SETUP + """
with open(sys.argv[2], 'rb') as f:
    f.readinto(pcm)
def stream(reps):
    frames = 0
    while reps:
        pos = 0
        while pos < n:
            pos = fe.push(pcm, pos, pos + 100 if pos + 100 < n else n)
            if fe.ready:
                frames += 1
        reps -= 1
    return frames
def measure(reps):      # locals only: a new global could grow the globals dict
    gc.collect()
    before = gc.mem_alloc()
    frames = stream(reps)
    return frames, gc.mem_alloc() - before
stream(1)               # warm up: first frame and every code path once
print('%d %d' % measure(int(sys.argv[5])))
"""


def _load(path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="int16")
    assert sr == SPEC.sample_rate
    return np.pad(x, (0, max(0, SPEC.clip_samples - len(x))))[: SPEC.clip_samples]


def _extreme_signals() -> np.ndarray:
    """Digital silence, full-scale extremes, tiny and huge noise, tones: bounds and floor."""
    n = SPEC.clip_samples
    rng = np.random.default_rng(7)
    t = np.arange(n)
    sig = [np.zeros(n), np.full(n, -32768), np.full(n, 32767),
           np.where(t % 2, 32767, -32768), np.where((t // 16) % 2, 32767, -32768),
           rng.integers(-32768, 32768, n), rng.integers(-1, 2, n),
           np.round(32767 * np.sin(2 * np.pi * 1000 * t / 16000)),
           np.round(32767 * np.sin(2 * np.pi * (50 + 3950 * t / n) * t / 16000)),
           np.round(3 * np.sin(2 * np.pi * 300 * t / 16000)),
           np.where(t % 320 == 0, -32768, 0)]
    return np.clip(np.stack(sig), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    """Seeded clips across all words, a normalisation fitted on other clips, the blob."""
    from hark.training import blob as host_blob

    rng = random.Random(2024)
    by_word = {}
    for p in sorted(shared_data.glob("*/*.flac")):
        if not p.parent.name.startswith("_"):
            by_word.setdefault(p.parent.name, []).append(p)
    for paths in by_word.values():
        rng.shuffle(paths)
    order = [paths[i] for i in range(max(map(len, by_word.values())))
             for paths in by_word.values() if i < len(paths)]     # round-robin over words
    picked, fit_on = order[:N_CLIPS], order[N_CLIPS:N_CLIPS + 60]
    norm = Normalisation.fit(np.stack([mfcc(_load(p).astype(np.float32) / 32768, SPEC)
                                       for p in fit_on]))
    clips = np.stack([_load(p) for p in picked])
    meta, arrays = ft.build(SPEC, norm, INPUT_SCALE, INPUT_ZERO_POINT)
    tmp = tmp_path_factory.mktemp("frontend")
    path = tmp / "fe.hark"
    full = {"format": 2, "labels": ["x"], "model": {},
            "features": dict(SPEC.to_dict(), normalisation=norm.to_dict()), "frontend": meta}
    host_blob.write_blob(path, full, arrays)
    return {"norm": norm, "clips": clips, "meta": meta, "arrays": arrays, "blob": path,
            "tmp": tmp, "words": sorted({p.parent.name for p in picked})}


def _run(mpy, setup, script, clips, *extra):
    raw = setup["tmp"] / f"clips{len(clips)}x{clips.shape[1]}.raw"
    clips.astype("<i2").tofile(raw)
    r = mpy(script, setup["blob"], raw, len(clips), clips.shape[1], *extra)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def _frames(line: str, n_mfcc: int = SPEC.n_mfcc) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(line), np.int8).reshape(-1, n_mfcc)


@pytest.fixture
def device_run(setup, mpy):
    """All clips through the device once per module (cached in the module's setup)."""
    if "device_run" not in setup:
        lines = _run(mpy, setup, RUN_CLIPS, setup["clips"])
        setup["device_run"] = (np.stack([_frames(line) for line in lines[:-1]]),
                               list(map(float, lines[-1].split())))
    return setup["device_run"]


def test_device_matches_librosa_reference(setup, device_run):
    dev, _ = device_run
    mfccs = np.stack([mfcc(c.astype(np.float32) / 32768, SPEC) for c in setup["clips"]])
    ref = quantise(setup["norm"].apply(mfccs), INPUT_SCALE, INPUT_ZERO_POINT)
    assert dev.shape == ref.shape == (N_CLIPS, *SPEC.shape)
    diff = np.abs(dev.astype(int) - ref)
    print(f"\ndevice vs librosa on {N_CLIPS} clips ({len(setup['words'])} words): "
          f"max {diff.max()} steps, mean {diff.mean():.4f} steps, "
          f"{(diff > 0).mean() * 100:.2f}% of values differ")
    assert len(setup["words"]) >= 30
    saturated = ((ref == -128) | (ref == 127)).mean()
    assert saturated < 0.005, "the test scale should leave real speech mostly unclipped"
    assert diff.max() <= MAX_STEPS
    assert diff.mean() <= MEAN_STEPS


def test_numpy_model_is_bit_exact(setup, device_run, mpy):
    dev, _ = device_run
    model = ft.device_features_numpy(setup["clips"], setup["meta"], setup["arrays"])
    assert np.array_equal(dev, model)
    one = ft.device_features_numpy(setup["clips"][7], setup["meta"], setup["arrays"], chunk=5)
    assert np.array_equal(one, model[7]), "batched and chunked runs agree with one clip"
    extreme = _extreme_signals()
    lines = _run(mpy, setup, RUN_CLIPS, extreme)
    dev_x = np.stack([_frames(line) for line in lines[:-1]])
    model_x = np.stack([ft.device_features_numpy(c, setup["meta"], setup["arrays"])
                        for c in extreme])
    assert np.array_equal(dev_x, model_x)
    assert (dev_x[0] == dev_x[0, 0]).all(), "digital silence gives one constant frame"


def test_block_size_independence(setup, mpy):
    clips = setup["clips"][:6]
    stream = np.concatenate(list(clips))[None, :]      # no reset across clip boundaries
    patterns = [16000, 1, 7, 319, 320, 321, 512, 1000, 0]
    for data in (clips, stream):
        lines = _run(mpy, setup, RUN_BLOCKS, data, ",".join(map(str, patterns)))
        assert len(lines) == len(data) * len(patterns)
        for c, sig in enumerate(data):
            expect = ft.device_features_numpy(sig, setup["meta"], setup["arrays"])
            assert len(expect) == 1 + (len(sig) - SPEC.n_fft) // SPEC.hop_length
            for k, size in enumerate(patterns):
                got = _frames(lines[c * len(patterns) + k])
                assert np.array_equal(got, expect), f"block size {size or 'random'}"


def test_push_checks_bounds_and_reset(setup, mpy):
    """viper reads pcm unchecked: push must refuse to run past it; reset drops samples."""
    code = DEVICE_SETUP + """
try:
    fe.push(pcm, 0, n + 1)
    print('no error')
except ValueError:
    print('ValueError')
fe.push(pcm, 0, 300)
fe.reset()
print(fe.ready, fe.push(pcm, 0, 511), fe.ready, fe.push(pcm, 511, n), fe.ready)
"""
    lines = _run(mpy, setup, code, setup["clips"][:1])
    assert lines == ["ValueError", "False 511 False 512 True"]


def test_no_allocation_per_frame(setup, mpy):
    reps = 20
    lines = _run(mpy, setup, RUN_ALLOC, setup["clips"][:1], reps)
    frames, delta = map(int, lines[-1].split())
    n = SPEC.clip_samples
    assert frames == 1 + ((reps + 1) * n - SPEC.n_fft) // SPEC.hop_length - SPEC.n_frames
    assert delta == 0, f"{delta} bytes allocated over {frames} frames"


def test_32bit_safety(setup):
    """Every intermediate the device computes stays inside int32 (the unix port is 64-bit)."""
    trace = {}
    for sig in list(setup["clips"][:40]) + list(_extreme_signals()):
        ft.device_features_numpy(sig, setup["meta"], setup["arrays"], trace)
    assert {"window", "cmul_hi", "cmul_lo", "fft_partial", "fft_out", "split_out", "power", "mel", "log",
            "lq", "dct_acc"} <= set(trace)
    for name, (lo, hi) in trace.items():
        assert -2 ** 31 <= lo and hi < 2 ** 31, f"{name} leaves int32: [{lo}, {hi}]"
    arrays = setup["arrays"]
    lq = max(abs(v) for v in trace["lq"])
    dct = arrays["fe.dct"].astype(np.int64).reshape(SPEC.n_mfcc, -1)
    worst = np.abs(dct).sum(axis=1) * lq + np.abs(arrays["fe.dct_bias"].astype(np.int64))
    assert worst.max() < 2 ** 31
    assert np.abs(arrays["fe.dct"]).max() < 2 ** 15     # the firmware keeps the matrix as int16


def test_tables_the_loader_cannot_compact_are_refused(setup, mpy):
    """The loader keeps the window's first half, the twiddles' quarter wave and the DCT matrix
    as int16; a blob whose window is not symmetric, whose twiddles are not those of the quarter
    wave or whose DCT does not fit int16 is a clear error, not a wrong feature."""
    from hark.training import blob as host_blob
    meta, arrays = host_blob.read_blob(setup["blob"])
    code = """
import sys, blob
try:
    blob.load(sys.argv[1])
    print('no error')
except ValueError as e:
    print(str(e).split(': ', 1)[1])
"""
    for name, at, value, what in (("fe.window", 3, 7, "window is not symmetric"),
                                  ("fe.twiddle", 401, 5, "twiddle 200 is not the quarter-wave table's"),
                                  ("fe.twiddle", 700, 5, "twiddle 350 is not the quarter-wave table's"),
                                  ("fe.dct", 3, 40000, "DCT matrix does not fit int16")):
        bad = dict(arrays)
        bad[name] = arrays[name].copy()
        bad[name][at] = value
        path = setup["tmp"] / f"bad-{name}-{at}.hark"
        host_blob.write_blob(path, meta, bad)
        r = mpy(code, path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"front-end {what}; re-export the model with `hark export`"


@pytest.mark.parametrize("fmax, n_mfcc", [(8000.0, 10), (8000.0, 13), (8000.0, 20)])
def test_other_specs_match_librosa_and_the_numpy_model(setup, mpy, fmax, n_mfcc):
    """The tables carry the spec: the shipped recipe's fmax 8000 and other cepstra counts
    (`hark train --fmax/--n-mfcc`) run the same firmware, bit-exact with the numpy model."""
    from hark.training import blob as host_blob
    spec = FeatureSpec(fmax=fmax, n_mfcc=n_mfcc)
    clips = setup["clips"][:24]
    mfccs = np.stack([mfcc(c.astype(np.float32) / 32768, spec) for c in clips])
    norm = Normalisation.fit(mfccs)
    meta, arrays = ft.build(spec, norm, INPUT_SCALE, INPUT_ZERO_POINT)
    path = setup["tmp"] / f"fe-{fmax:.0f}-{n_mfcc}.hark"
    host_blob.write_blob(path, {"format": 2, "labels": ["x"], "model": {},
                                "features": dict(spec.to_dict(), normalisation=norm.to_dict()),
                                "frontend": meta}, arrays)
    lines = _run(mpy, dict(setup, blob=path), RUN_CLIPS, clips)
    dev = np.stack([_frames(line, n_mfcc) for line in lines[:-1]])
    assert np.array_equal(dev, ft.device_features_numpy(clips, meta, arrays))
    diff = np.abs(dev.astype(int) - quantise(norm.apply(mfccs), INPUT_SCALE, INPUT_ZERO_POINT))
    assert dev.shape == (len(clips), spec.n_frames, n_mfcc)
    assert diff.max() <= MAX_STEPS and diff.mean() <= MEAN_STEPS


def test_speed(device_run):
    _, (best, median) = device_run
    print(f"\nfront end on the unix port: {best:.1f} µs per 20 ms frame "
          f"({20000 / best:.0f}x real time; median over clips {median:.1f} µs)")
    assert best < 60
