"""On-device enrollment (issue 16): the embedding every blob marks, the enrolled-word store and
matcher in the firmware, detection through the same detector, grammar and actions, and the
host commands (`hark simulate --enroll`, `hark enroll`)."""
from pathlib import Path

import numpy as np
import pytest

from hark.training import embedding
from hark.training.blob import read_blob

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"

EMBED = """
import sys, blob, engine, streaming
b = blob.load(sys.argv[1])
it = (streaming.StreamingInterpreter(b) if sys.argv[4] == 's' else engine.Interpreter(b))
src = open(sys.argv[2], 'rb')
dst = open(sys.argv[3], 'wb')
buf = bytearray(it.width if sys.argv[4] == 's' else len(it.input))
first = True
while src.readinto(buf) == len(buf):
    if sys.argv[4] == 's':
        if first:
            it.fill(buf)
            first = False
        else:
            it.push(buf)
    else:
        it.input[:] = buf
        it.invoke()
    dst.write(it.embedding)
dst.close()
print(len(it.embedding))
"""


def _firmware_embeddings(mpy, blob_path, x, mode, tmp_path):
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    np.ascontiguousarray(x, np.int8).tofile(src)
    r = mpy(EMBED, blob_path, src, dst, mode)
    assert r.returncode == 0, r.stderr
    size = int(r.stdout.split()[-1])
    return (np.fromfile(dst, np.uint8) ^ 0x80).astype(np.int8).reshape(-1, size)   # offset form


@pytest.mark.parametrize("name", ["default", "dscnn"])
def test_windowed_embedding_matches_tflite_micro_cut_at_that_layer(name, mpy, tmp_path):
    tflite = (MODELS / f"{name}.tflite").read_bytes()
    meta = read_blob(MODELS / f"{name}.hark")[0]["model"]
    assert meta["embedding"]["size"] == 64
    rng = np.random.default_rng(1)
    shape = tuple(meta["input"]["shape"][1:])
    x = np.clip(rng.normal(meta["input"]["zero_point"], rng.uniform(5, 60, (96, 1, 1)),
                           (96,) + shape), -128, 127).astype(np.int8)
    ref = embedding.embed(embedding.cut_tflite(tflite), x)
    got = _firmware_embeddings(mpy, MODELS / f"{name}.hark", x, "w", tmp_path)
    assert ref.shape == got.shape == (96, 64)
    assert len(np.unique(ref, axis=0)) > 90        # not a constant: the test can fail
    np.testing.assert_array_equal(got, ref)


def test_streaming_embedding_matches_tflite_micro_at_every_hop(mpy, tmp_path):
    """The streaming engine's embedding after each push equals TFLite Micro's on the window
    ending at that hop (the runtime streams the tcn family)."""
    tflite = (MODELS / "default.tflite").read_bytes()
    meta = read_blob(MODELS / "default.hark")[0]["model"]
    n, width = meta["input"]["shape"][1:3]
    rng = np.random.default_rng(2)
    frames = np.clip(rng.normal(0, 40, (150, width)), -128, 127).astype(np.int8)
    pad = np.concatenate([np.repeat(frames[:1], n - 1, axis=0), frames])
    windows = np.stack([pad[k:k + n] for k in range(len(frames))])
    ref = embedding.embed(embedding.cut_tflite(tflite), windows)
    got = _firmware_embeddings(mpy, MODELS / "default.hark", frames, "s", tmp_path)
    np.testing.assert_array_equal(got, ref)
