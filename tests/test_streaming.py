"""Incremental streaming inference (firmware/streaming.py), hop by hop, in the real MicroPython
unix port: on long real audio every hop's output must equal the windowed engine's and TFLite
Micro's on the window ending at that hop; pushes allocate nothing; models that cannot stream
are refused with the reason; the runtime streams by default and --no-stream is the same.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark import BOARDS_DIR, FIRMWARE_DIR, MODELS_DIR, boards
from hark.training import convert, graph
from helpers import cached_tflite
from hark.training.bench import streaming_vs_windowed
from hark.training.blob import read_blob, write_blob
from hark.unixport import micropython_binary

REPO = Path(__file__).resolve().parents[1]
MODEL = MODELS_DIR / "default.hark"
RATE = 16000
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "marvin", "house",
         "seven", "wow")


def _need_default():
    if not MODEL.exists():
        pytest.skip(f"{MODEL} not exported yet")


def real_audio(data, seconds, seed=0):
    """Real clips of many words with short gaps, over a bed of real background noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(3):
        for w in WORDS:
            clips = sorted((data / w).glob("*.flac"))
            x = sf.read(clips[(7 * k + 3) % len(clips)], dtype="int16")[0]
            parts += [np.zeros(int(rng.uniform(0.1, 0.6) * RATE), np.int16), x]
    speech = np.resize(np.concatenate(parts), int(seconds * RATE)).astype(np.int32)
    noise = np.concatenate([sf.read(p, dtype="int16")[0] for p in
                            sorted((data / "_background_noise_").glob("*.flac"))[:3]])
    start = int(rng.integers(0, len(noise) - len(speech)))
    level = np.repeat(rng.uniform(0.02, 0.5, len(speech) // RATE + 1), RATE)[:len(speech)]
    mix = speech + (noise[start:start + len(speech)] * level).astype(np.int32)
    return np.clip(mix, -32768, 32767).astype(np.int16)


def windows(frames, n):
    """The windowed model input at every hop: frame 0 fills the first window, then shifts."""
    pad = np.concatenate([np.repeat(frames[:1], n - 1, axis=0), frames])
    idx = np.arange(len(frames))[:, None] + np.arange(n)[None, :]
    return pad[idx]


def assert_matches_tflm(tflite, r):
    x = windows(r["frames"], r["frames_per_window"])[r["output_hops"]]
    ref = convert.run_tflm(tflite, x).reshape(len(x), -1)
    bad = np.nonzero((ref != r["stream"]).any(axis=1))[0]
    assert len(bad) == 0, (f"{len(bad)}/{len(x)} hops differ from TFLite Micro, first hop {bad[0]}: "
                           f"tflm {ref[bad[0]].tolist()} stream {r['stream'][bad[0]].tolist()}")


def test_default_model_streams_bit_exact_on_real_audio(shared_data):
    """40 s of real speech and noise: identical outputs at all 2,000 hops, >= 10x fewer MACs."""
    _need_default()
    audio = real_audio(shared_data, 40)
    r = streaming_vs_windowed(MODEL, audio, outputs=True)
    assert r["hops"] >= 1990
    assert r["identical_outputs"], f"{r['mismatched_hops']} of {r['hops']} hops differ"
    assert (r["stream"] == r["window"]).all()
    assert r["stream_alloc_bytes"] == 0
    # a live stream: many different outputs and several labels on top somewhere
    assert len({bytes(o) for o in r["stream"]}) > r["hops"] // 2
    assert len(set(r["stream"].argmax(axis=1).tolist())) >= 4
    tflite = MODEL.with_suffix(".tflite")
    if tflite.exists():
        assert_matches_tflm(tflite.read_bytes(), r)
    assert r["mac_ratio"] >= 10, r
    assert r["streaming"]["us_per_hop_mean"] < r["windowed"]["us_per_hop_mean"]


def test_default_model_every_second_hop(shared_data):
    """infer_every=2: only the columns a wanted output reads are computed (fewer MACs again)."""
    _need_default()
    once = streaming_vs_windowed(MODEL, real_audio(shared_data, 2, seed=3))
    r = streaming_vs_windowed(MODEL, real_audio(shared_data, 20, seed=3), outputs=True, every=2)
    assert r["identical_outputs"] and len(r["output_hops"]) == len(r["stream"]) >= 499
    assert r["stream_alloc_bytes"] == 0
    tflite = MODEL.with_suffix(".tflite")
    if tflite.exists():
        assert_matches_tflm(tflite.read_bytes(), r)
    assert r["streaming"]["macs_per_hop"] < 0.7 * once["streaming"]["macs_per_hop"]


# --- other members of the tcn family: pooling over several columns, dilated (k, 1) convolutions,
# --- strided first layer, MAX pooling, no pooling at all; and one whose strides do not align


def _pooled(L, keras):
    """49 -> 47 -> s2 23 -> conv k3 at dilation 2: 21 -> s2 10 -> average over 10 at dilation 4."""
    x = i = keras.Input((49, 10))
    x = L.Reshape((49, 1, 10))(x)
    x = L.Conv2D(16, (3, 1), activation="relu")(x)
    x = L.DepthwiseConv2D((3, 1), strides=(2, 1))(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.Conv2D(12, (3, 1), activation="relu")(x)
    x = L.DepthwiseConv2D((3, 1), strides=(2, 1), activation="relu")(x)
    x = L.Conv2D(20, 1, activation="relu")(x)
    x = L.AveragePooling2D((x.shape[1], 1))(x)
    x = L.Dense(12)(L.Flatten()(x))
    return keras.Model(i, L.Softmax()(x))


def _maxpool(L, keras):
    """Strided first conv (49 -> 23), kernel 3 stride 3 (21 -> 7), max over 7 at dilation 6."""
    x = i = keras.Input((49, 10))
    x = L.Reshape((49, 1, 10))(x)
    x = L.Conv2D(12, (5, 1), strides=(2, 1), activation="relu6")(x)
    x = L.DepthwiseConv2D((3, 1), activation="relu")(x)
    x = L.DepthwiseConv2D((3, 1), strides=(3, 1))(x)
    x = L.Conv2D(8, 1, activation="relu")(x)
    x = L.MaxPooling2D((x.shape[1], 1))(x)
    x = L.Dense(12)(L.Flatten()(x))
    return keras.Model(i, L.Softmax()(x))


def _unpooled(L, keras):
    """Convolutions down to one column, then Dense straight on it (no pooling op)."""
    x = i = keras.Input((49, 10))
    x = L.Reshape((49, 1, 10))(x)
    x = L.Conv2D(8, (9, 1), strides=(4, 1), activation="relu")(x)      # 49 -> 11
    x = L.DepthwiseConv2D((11, 1), activation="relu")(x)              # 11 -> 1
    x = L.Dense(12)(L.Flatten()(x))
    return keras.Model(i, L.Softmax()(x))


def _misaligned(L, keras):
    """50 frames: 50 -> 46, then (46 - 5) % 2 = 1: the stride-2 layer's last output ends early."""
    x = i = keras.Input((50, 10))
    x = L.Reshape((50, 1, 10))(x)
    x = L.Conv2D(8, (5, 1), activation="relu")(x)
    x = L.DepthwiseConv2D((5, 1), strides=(2, 1), activation="relu")(x)
    x = L.AveragePooling2D((x.shape[1], 1))(x)
    x = L.Dense(12)(L.Flatten()(x))
    return keras.Model(i, L.Softmax()(x))


BUILDERS = {"pooled": _pooled, "maxpool": _maxpool, "unpooled": _unpooled, "misaligned": _misaligned}


def _build(name):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(2)
    model = BUILDERS[name](L, keras)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g = layer.get_weights()[0]
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, g.shape),
                               rng.normal(0, 0.2, g.shape), rng.uniform(0.5, 2, g.shape)])
        if isinstance(layer, L.Dense):   # spread logits so the softmax output moves with the input
            k, b = layer.get_weights()
            layer.set_weights([rng.normal(0, 1.5, k.shape), b])
    rep = [rng.normal(0, 1, (50,) + model.input_shape[1:]).astype(np.float32) for _ in range(2)]
    return convert.to_int8_tflite(model, rep)


@pytest.fixture(scope="module")
def variants():
    """name -> tflite bytes of the models built here (cached, see helpers.cached_tflite)."""
    return cached_tflite("test_streaming", _build, BUILDERS)


def _blob(tflite, path):
    """A full device blob: the default model's front end and detector with this graph."""
    meta, arrays = read_blob(MODEL)
    model, warrays = graph.from_tflite(tflite)
    meta = dict(meta, model=model, name=path.stem)
    arrays = {k: v for k, v in arrays.items() if k.startswith("fe.")}
    arrays.update(warrays)
    write_blob(path, meta, arrays)
    return model


@pytest.mark.parametrize("name,every", [("pooled", 1), ("pooled", 2), ("maxpool", 1), ("maxpool", 3),
                                        ("unpooled", 1)])
def test_tcn_variants_stream_bit_exact(name, every, variants, shared_data, tmp_path):
    _need_default()
    path = tmp_path / f"{name}.hark"
    model = _blob(variants[name], path)
    kinds = [op["type"] for op in model["graph"]["ops"]]
    assert ("AVERAGE_POOL_2D" in kinds) == (name == "pooled")
    assert ("MAX_POOL_2D" in kinds) == (name == "maxpool")
    r = streaming_vs_windowed(path, real_audio(shared_data, 12, seed=1), outputs=True, every=every)
    assert r["identical_outputs"], f"{name}: {r['mismatched_hops']} of {r['hops']} hops differ"
    assert r["stream_alloc_bytes"] == 0
    assert len({bytes(o) for o in r["stream"]}) > len(r["stream"]) // 10
    assert_matches_tflm(variants[name], r)
    assert r["streaming"]["macs_per_hop"] < r["windowed"]["macs_per_hop"]


REASON = """
import sys, blob, streaming
print(streaming.reason(blob.load(sys.argv[1])))
"""


def _reason(path):
    env = dict(os.environ, MICROPYPATH=str(FIRMWARE_DIR))
    r = subprocess.run([micropython_binary(), "-c", REASON, str(path)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_refusals_name_the_reason(variants, tmp_path):
    _need_default()
    path = tmp_path / "m.hark"
    _blob(variants["misaligned"], path)
    msg = _reason(path)
    assert "op 2 DEPTHWISE_CONV_2D" in msg and "(input length 46 - kernel 5) % stride 2 = 1" in msg, msg
    assert "(in_len - k) % stride == 0" in msg
    assert _reason(MODEL) == "None"
    tflite = MODEL.with_suffix(".tflite").read_bytes()
    ops = graph.from_tflite(tflite)[0]["graph"]["ops"]
    first_conv = next(i for i, op in enumerate(ops) if op["type"] == "CONV_2D")
    cases = {"kernel": ("kernel", [5, 3], "kernel over a"),
             "padding": ("padding", "SAME", "pads (SAME)")}
    meta, arrays = read_blob(MODEL)
    arrays = {k: v for k, v in arrays.items() if k.startswith("fe.")}
    for field, value, expect in cases.values():
        model, warrays = graph.from_tflite(tflite)
        model["graph"]["ops"][first_conv]["options"][field] = value
        write_blob(path, dict(meta, model=model), {**arrays, **warrays})
        assert expect in _reason(path)
    for name in ("dscnn", "tiny_conv"):      # 2-D kernels over time x coefficients
        p = MODELS_DIR / f"{name}.hark"
        if p.exists():
            assert "only (k, 1) kernels along time" in _reason(p)


def _main(model, wav, *flags, board=BOARDS_DIR / "unix.json"):
    env = dict(os.environ, MICROPYPATH=str(FIRMWARE_DIR))
    r = subprocess.run([micropython_binary(), "-X", "heapsize=1M", str(FIRMWARE_DIR / "main.py"),
                        "--model", str(model), "--board", str(board), "--wav",
                        str(wav), "--pad-ms", "1000", "--stats", *flags],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    return [x for x in lines if x.startswith("t=")], next(x for x in lines if "streaming=" in x)


def test_runtime_streams_by_default_and_no_stream_agrees(variants, shared_data, tmp_path):
    _need_default()
    wav = tmp_path / "words.wav"
    sf.write(wav, real_audio(shared_data, 15, seed=2), RATE, subtype="PCM_16")
    streamed, stats = _main(MODEL, wav)
    assert "streaming=1" in stats
    s_macs = int(stats.split("macs_per_hop=")[1].split()[0])
    windowed, stats = _main(MODEL, wav, "--no-stream")
    assert "streaming=0" in stats
    assert int(stats.split("macs_per_hop=")[1].split()[0]) >= 10 * s_macs
    assert streamed == windowed and len(streamed) >= 2, streamed
    every2 = tmp_path / "every2.json"
    every2.write_text(json.dumps(dict(boards.load("unix"), detector={"infer_every": 2})))
    streamed, stats = _main(MODEL, wav, board=every2)
    assert "streaming=1" in stats and "infer_every=2" in stats
    assert streamed == _main(MODEL, wav, "--no-stream", board=every2)[0] and streamed, streamed
    path = tmp_path / "misaligned.hark"
    _blob(variants["misaligned"], path)
    assert "streaming=0" in _main(path, wav)[1]     # not streamable: the windowed engine


def test_a_ring_past_the_arena_is_refused(mpy):
    """The firmware stores each ring once and _advance shifts it unchecked: a ring table that
    would run past the arena is refused at start-up."""
    code = """
import sys, blob, streaming
b = blob.load(sys.argv[1])
b.arrays["p.s.rings"][8] = 40       # the second ring's length R (5)
try:
    streaming.StreamingInterpreter(b)
    print('no error')
except ValueError as e:
    print(e)
"""
    r = mpy(code, MODEL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "streaming ring 1 runs past the arena; re-export the model with `hark export`"
