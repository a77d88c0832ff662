"""Benchmark of on-device enrollment (issue 16): words the model has no class for, enrolled from
a few clips, matched by firmware/enroll.py's rule on the model's embedding.

    python -m hark.training.enroll_eval --model models/default.hark --data DATA --out runs/enroll

Every clip is streamed as the device hears it (digital silence, the clip, 1 s of silence) through
the device front end (bit-exact numpy, training/frontend_tables.py) and the firmware's own
streaming engine in the unix port (tools/engine_batch.py): the embedding after every hop.
Enrollment keeps, per example, the hop firmware/enroll.py keeps (the largest embedding mass);
a clip is detected when any of its hops is within the word's threshold of a template (nearest
template, L1 distance on the int8 embedding), the threshold calibrated from the examples' spread
as firmware/enroll.py does it. The spread factor is chosen on the negatives of half the
speakers (at <= 1 false accept per hour) and false accepts are counted on the other half.
"""
import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from . import dataset as ds
from .blob import read_blob
from .frontend_tables import device_features_numpy

PAD_S = 1.0
RATE = 16000
NOVEL = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow")


def clip_stream(path, meta, arrays, pad_s=PAD_S) -> np.ndarray:
    """int8 feature frames of digital silence (the first frame, the runtime's warm-up), the clip
    and pad_s of silence, as the device front end computes them."""
    pcm = sf.read(str(path), dtype="int16")[0]
    n_fft = meta["frontend"]["n_fft"]
    x = np.concatenate([np.zeros(n_fft, np.int16), pcm, np.zeros(int(pad_s * RATE), np.int16)])
    return device_features_numpy(x, meta, arrays)


def embeddings(model, paths, cache: Path = None, progress=None) -> list:
    """Per clip, the firmware's embedding after every hop (uint8 offset form)."""
    from hark.engine_batch import run_embedding_streams
    meta, arrays = read_blob(model)
    key = zlib.crc32((str(Path(model).read_bytes()[:16]) + "|".join(map(str, paths))).encode())
    if cache:
        f = cache / f"emb_{key:08x}.npz"
        if f.exists():
            z = np.load(f)
            return np.split(z["e"], z["ends"][:-1])
    streams = [clip_stream(p, meta, arrays) for p in paths]
    out = run_embedding_streams(model, streams, progress=progress)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, e=np.concatenate(out), ends=np.cumsum([len(e) for e in out]))
    return out


def template_of(hops: np.ndarray) -> np.ndarray:
    """The hop firmware/enroll.py keeps from one utterance: the largest embedding mass (sum of
    the offset-form bytes, i.e. of the post-ReLU activations)."""
    return hops[int(np.argmax(hops.astype(np.int32).sum(axis=1)))]


def l1(a, b):
    return np.abs(a.astype(np.int32)[..., None, :] - b.astype(np.int32)[None, :, :]).sum(-1)


def spread(templates: np.ndarray) -> int:
    """firmware/enroll.py calibrate(): the mean over examples of the L1 distance to the nearest
    other example."""
    d = l1(templates, templates)
    np.fill_diagonal(d, 1 << 30)
    return int(d.min(axis=1).mean())


def best_distance(hops: np.ndarray, templates: np.ndarray) -> int:
    """The smallest distance to a template over a clip's hops: the clip fires when it is within
    the threshold."""
    return int(l1(hops, templates).min())
