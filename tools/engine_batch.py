"""Run hark's int8 engine (firmware/engine.py) in the MicroPython unix port on many inputs.

Used by `hark eval --engine firmware` and the parity checks: the inputs go through the very
code a board runs, in one MicroPython process.
"""
import os
import tempfile
from pathlib import Path

import numpy as np

from hark import FIRMWARE_DIR
from hark.cli import HarkError
from hark.unixport import micropython_binary, run_watched

_SCRIPT = """
import sys, blob, engine
model = blob.load(sys.argv[1])
interp = engine.Interpreter(model)
n_in, n_out = len(interp.input), len(interp.output)
with open(sys.argv[2], 'rb') as src, open(sys.argv[3], 'wb') as dst:
    while src.readinto(interp.input) == n_in:
        interp.invoke()
        dst.write(interp.output)
"""


def _run_script(script, model_path, src, dst, heapsize, unit_bytes, desc, progress, *args):
    """script (the firmware's modules importable) in the unix port on model, input and output
    files (and args), with a bar while it reads src; HarkError with its stderr if it fails."""
    env = dict(os.environ, MICROPYPATH=str(FIRMWARE_DIR))
    proc = run_watched([micropython_binary(), "-X", f"heapsize={heapsize}", "-c", script,
                        str(Path(model_path).resolve()), str(src), str(dst), *args], env,
                       watch=src, unit_bytes=unit_bytes, unit="clip", desc=desc, progress=progress)
    if proc.returncode != 0:
        raise HarkError(f"the firmware engine failed on {model_path}:\n"
                        f"{proc.stderr.decode(errors='replace').strip()}")


def run_engine_batch(model_path, x_int8: np.ndarray, heapsize: str = "8M",
                     progress=None) -> np.ndarray:
    """int8 inputs (n, ...) -> int8 outputs (n, labels) computed by the firmware engine
    (progress: a bar while it runs; None shows one on a terminal)."""
    x = np.ascontiguousarray(x_int8, np.int8).reshape(len(x_int8), -1)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        src.write_bytes(x.tobytes())
        _run_script(_SCRIPT, model_path, src, dst, heapsize, x.shape[1], "firmware", progress)
        out = np.frombuffer(dst.read_bytes(), np.int8)
    return out.reshape(len(x), -1)


_STREAMS_SCRIPT = """
import sys, struct, blob, streaming
it = streaming.StreamingInterpreter(blob.load(sys.argv[1]))
cols = []
if sys.argv[4] == 'columns':
    r = it._rings
    cols = [memoryview(it.arena)[r[7 * i + 2] + (r[7 * i + 1] - 1) * r[7 * i + 3]:
                                 r[7 * i + 2] + r[7 * i + 1] * r[7 * i + 3]]
            for i in range(it._n_rings)]
frame = bytearray(it.width)
head = bytearray(4)
with open(sys.argv[2], 'rb') as src, open(sys.argv[3], 'wb') as dst:
    while src.readinto(head) == 4:
        n = struct.unpack('<I', head)[0]
        src.readinto(frame)
        it.fill(frame)
        for _ in range(n - 1):
            src.readinto(frame)
            it.push(frame)
            dst.write(it.embedding)
            for c in cols:
                dst.write(c)
"""


def run_embedding_streams(model_path, streams, heapsize: str = "8M", progress=None) -> list:
    """Each int8 feature stream (frames, width) through the firmware's streaming engine as the
    runtime feeds it (its first frame fills the window, as the warm-up's silence does; then one
    push a hop) -> per stream the embedding after every push: uint8 (frames - 1, size) in the
    engine's offset form (q + 128), whose mass firmware/enroll.py checks."""
    size = read_size(model_path)
    return _run_streams("embedding", model_path, streams, size, heapsize, "firmware embeddings",
                        progress)


def _run_streams(rows, model_path, streams, row_bytes, heapsize, desc, progress) -> list:
    """The streaming engine on the streams (each a u32 frame count, then the int8 frames) ->
    per stream uint8 (frames - 1, row_bytes): after every push the embedding, and with rows
    "columns" each ring's newest column too."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        with open(src, "wb") as f:
            for s in streams:
                s = np.ascontiguousarray(s, np.int8)
                f.write(np.uint32(len(s)).tobytes() + s.tobytes())
        _run_script(_STREAMS_SCRIPT, model_path, src, dst, heapsize,
                    max(1, src.stat().st_size // len(streams)), desc, progress, rows)
        out = np.frombuffer(dst.read_bytes(), np.uint8).reshape(-1, row_bytes)
    ends = np.cumsum([len(s) - 1 for s in streams])
    return np.split(out, ends[:-1])


def run_column_streams(model_path, streams, heapsize: str = "8M", progress=None) -> list:
    """As run_embedding_streams, each hop's embedding followed by the newest column of every
    streaming ring (the input frame, then each temporal layer's output; offset form): the
    frame-level features before pooling. Per stream uint8 (frames - 1, size + sum of columns)."""
    from hark.training.blob import read_blob
    size = read_size(model_path)
    width = size + int(read_blob(model_path)[1]["p.s.rings"].reshape(-1, 7)[:, 3].sum())
    return _run_streams("columns", model_path, streams, width, heapsize, "firmware columns",
                        progress)


def read_size(model_path) -> int:
    from hark.training.blob import read_blob
    e = read_blob(model_path)[0]["model"].get("embedding")
    if not e:
        raise HarkError(f"{model_path} marks no embedding; re-export it with `hark export`")
    return e["size"]
