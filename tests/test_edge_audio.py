"""Awkward audio through the firmware: the front end alone (bit-exact with its numpy model,
32-bit-safe) and the whole pipeline in the unix port (profile `unix`; whether a model fits each board's
RAM is `hark bench`'s question).

Signals: digital silence, a faint hiss, full-scale clipping square waves, Nyquist alternation,
DC offsets (with and without noise), very loud clipped noise, files shorter than one frame,
odd sample counts and an odd byte count in the data chunk. Every run must end cleanly with
the right frame count, allocate nothing per hop, and silence must not fire a detection.
"""
import json
import struct

import numpy as np
import pytest

from hark import MODELS_DIR, boards
from hark.training import blob as host_blob
from hark.training import export, frontend_tables, nonspeech
from hark.training.features import FeatureSpec, Normalisation
from hark.unixport import run_firmware

RATE = 16000
HOP, NFFT = 320, 512
BOARD = boards.load("unix")


def signals() -> dict:
    rng = np.random.default_rng(11)
    n = 3 * RATE
    t = np.arange(n)
    sq = lambda period: np.where((t // (period // 2)) % 2, 32767, -32768)
    return {
        **nonspeech.quiet_signals(n / RATE),     # silence, hiss, DC steps: must stay quiet
        "square_100hz_full_scale": sq(160),
        "square_1khz_full_scale": sq(16),
        "nyquist_full_scale": np.where(t % 2, 32767, -32768),
        "loud_noise_clipped": rng.normal(0, 30000, n),
        "empty": np.zeros(0),
        "one_sample": np.array([1234]),
        "under_one_frame_511": rng.normal(0, 3000, NFFT - 1),
        "exactly_one_frame_512": rng.normal(0, 3000, NFFT),
        "odd_16001": rng.normal(0, 3000, RATE + 1),
        "odd_333": rng.normal(0, 3000, 333),
    }


def pcm(x) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def frames_for(n_samples: int) -> int:
    return max(0, 1 + (n_samples - NFFT) // HOP)


def wav_bytes(samples: np.ndarray, extra_byte: bool = False) -> bytes:
    data = samples.astype("<i2").tobytes() + (b"\x7f" if extra_byte else b"")
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, 2 * RATE, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    body += b"\0" * (len(data) & 1)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The shipped default model's int8 graph with front-end tables from the current exporter
    (so the test follows the firmware's front end even between model re-exports)."""
    shipped = MODELS_DIR / "default.hark"
    if not shipped.exists():
        pytest.skip("no models/default.hark")
    meta, _ = host_blob.read_blob(shipped)
    out = tmp_path_factory.mktemp("edge") / "default.hark"
    export.write_model_blob(shipped.with_suffix(".tflite").read_bytes(),
                            FeatureSpec.from_dict(meta["features"]),
                            Normalisation.from_dict(meta["features"]["normalisation"]),
                            meta["labels"], out, meta["name"], meta["detector"], meta.get("family"))
    return out


FE_SCRIPT = """
import sys
from array import array
import blob, frontend
b = blob.load(sys.argv[1])
fe = frontend.FrontEnd(b.meta, b.arrays)
buf = array('h', bytes(2 * 333))   # an odd block size on purpose
for path in sys.argv[2:]:
    fe.reset()
    out = []
    with open(path, 'rb') as f:
        while True:
            n = f.readinto(buf) // 2
            if not n:
                break
            pos = 0
            while pos < n:
                pos = fe.push(buf, pos, n)
                if fe.ready:
                    out.append(fe.frame.hex())
    print(','.join(out))
print('DONE')
"""


def test_front_end_is_bit_exact_and_32bit_safe(model, mpy, tmp_path):
    meta, arrays = host_blob.read_blob(model)
    sigs = {k: pcm(v) for k, v in signals().items()}
    paths = []
    for i, x in enumerate(sigs.values()):
        (tmp_path / f"signal_{i}.raw").write_bytes(x.astype("<i2").tobytes())
        paths.append(tmp_path / f"signal_{i}.raw")
    res = mpy(FE_SCRIPT, model, *paths, timeout=300)
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and lines[-1] == "DONE", res.stderr[-600:]
    for (name, x), line in zip(sigs.items(), lines):
        trace = {}
        want = frontend_tables.device_features_numpy(x, meta, arrays, trace=trace)
        got = [np.frombuffer(bytes.fromhex(h), np.int8) for h in line.split(",") if h]
        assert len(got) == frames_for(len(x)) == len(want), name
        if got:
            assert np.array_equal(np.stack(got), want), name
        for stage, (lo, hi) in trace.items():
            assert -2 ** 31 <= lo and hi < 2 ** 31, (name, stage, lo, hi)


@pytest.fixture(scope="module")
def pipeline_runs(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edge_wavs")
    runs = {}
    cases = {k: (pcm(v), False) for k, v in signals().items()}
    cases["odd_byte_count_data_chunk"] = (pcm(np.zeros(RATE // 2)), True)
    for i, (name, (x, extra)) in enumerate(cases.items()):
        path = tmp / f"signal_{i}.wav"
        path.write_bytes(wav_bytes(x, extra))
        runs[name] = (len(x), run_firmware(model, BOARD, wav=path, heapcheck=True, timeout=120))
    return runs


def test_pipeline_survives_every_signal(pipeline_runs):
    for name, (n, run) in pipeline_runs.items():
        # the runtime primes the front end with one frame of silence: a frame per 320 samples
        assert run.stats["frames"] == n // HOP, (name, run.stats)
        assert run.stats["alloc_bytes"] == 0, (name, run.stats)
        assert run.stats["heap_peak"] < BOARD["ram_budget_bytes"]
    seen = {name: [str(d) for d in run.detections] for name, (_, run) in pipeline_runs.items()}
    print("detections per edge signal:", json.dumps(seen))


def test_no_detection_on_silence(pipeline_runs):
    for name in (*nonspeech.quiet_signals(), "empty", "one_sample", "under_one_frame_511",
                 "odd_byte_count_data_chunk"):
        assert pipeline_runs[name][1].detections == [], name


def test_non_speech_gate_passes_the_shipped_model_and_stops_a_trigger_happy_one(tmp_path, capsys):
    """`python -m hark.training.nonspeech`, which `make train-default` runs before shipping."""
    shipped = MODELS_DIR / "default.hark"
    if not shipped.exists():
        pytest.skip("no models/default.hark")
    assert nonspeech.main([str(shipped)]) == 0
    eager = tmp_path / "eager.hark"     # same graph, a detector that fires on almost anything
    export.repack(shipped.with_suffix(".tflite"), eager,
                  detector={"threshold": 0.02, "average_window_ms": 200, "minimum_count": 1})
    assert nonspeech.main([str(eager), "--json", str(tmp_path / "fired.json")]) == 1
    assert "fires on non-speech input (DC step" in capsys.readouterr().out
    fired = json.loads((tmp_path / "fired.json").read_text())   # what `make gate-seed` keeps
    assert set(fired) == set(nonspeech.quiet_signals())
    assert any(fired.values()) and all("@" in d for dets in fired.values() for d in dets)


def test_more_dc_offsets_keep_the_shipped_model_quiet(capsys):
    """`--offsets`: 18 more offsets and steps, at levels training never draws exactly."""
    signals = nonspeech.offset_signals()
    assert len(signals) == 18 and all(len(x) == 3 * RATE for x in signals.values())
    assert signals["DC -25000"][0] == -25000 and signals["decaying step +20000"][-1] < 100
    shipped = MODELS_DIR / "default.hark"
    if not shipped.exists():
        pytest.skip("no models/default.hark")
    assert nonspeech.main([str(shipped), "--offsets"]) == 0
    out = capsys.readouterr().out
    assert "DC +15000 + noise: quiet" in out and "decaying step -20000: quiet" in out
