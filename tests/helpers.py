"""Test helpers shared by several test files (plain functions; fixtures live in conftest.py)."""
import hashlib
import inspect

import numpy as np

from hark import REPO

LABELS = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off",
          "stop", "go"]


def write_wav(path, y, sr=16000):
    """A sound file at path (its folders made): the clips of a Speech Commands-layout folder."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr)


def edit_output_layer(path, edit):
    """Rewrite the last Dense layer of the Keras model saved at path: edit(w, b) -> [w, b]. A
    smoke-test model (one epoch on a few clips) needs a push there to give detections at all."""
    import keras

    model = keras.models.load_model(path)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    dense.set_weights(edit(*dense.get_weights()))
    model.save(path)


def fake_blob(path, payload_bytes=1000, arena_bytes=12000, seed=1, labels=LABELS):
    """A valid model blob (written by the real host writer) of about payload_bytes int8 weights."""
    from hark.training import blob

    model = {"input": {"shape": [1, 49, 10, 1], "scale": 0.1, "zero_point": 0}}
    if arena_bytes is not None:
        model["arena_bytes"] = arena_bytes
    weights = np.random.default_rng(seed).integers(-128, 128, payload_bytes, dtype=np.int8)
    blob.write_blob(path, {"format": 2, "name": "fake", "labels": labels, "model": model},
                    {"w.fake": weights})
    return path


def cached_tflite(folder: str, build, builders: dict) -> dict:
    """name -> tflite bytes of build(name) for every builder, cached under .cache/<folder>/
    keyed by the source of build, the builders and the converter, and the TF version."""
    import tensorflow as tf

    from hark.training import convert

    key = hashlib.sha1((inspect.getsource(build) + "".join(inspect.getsource(b) for b in
                        builders.values()) + inspect.getsource(convert) + tf.__version__)
                       .encode()).hexdigest()[:12]
    cache = REPO / ".cache" / folder
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in builders:
        path = cache / f"{name}-{key}.tflite"
        if not path.exists():
            path.write_bytes(build(name))
        out[name] = path.read_bytes()
    return out


def riff(chunks) -> bytes:
    """A RIFF/WAVE file from (id, payload) chunks, padding odd chunks as the spec says."""
    import struct

    body = b"WAVE"
    for cid, payload in chunks:
        body += cid + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) & 1 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt(rate=16000, channels=1, bits=16, tag=1) -> bytes:
    """The payload of a PCM `fmt ` chunk."""
    import struct

    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def make_train_words(*make_args) -> list:
    """The `hark train` line of a make target as make expands it (`make -n`), split in words:
    what a Makefile target would train, without training."""
    import shlex
    import subprocess
    out = subprocess.run(["make", "-n", "-s", *make_args], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.replace("\\\n", " ")
    return shlex.split(next(line for line in out.splitlines() if "hark train " in line))
