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


def run_engine_batch(model_path, x_int8: np.ndarray, heapsize: str = "8M",
                     progress=None) -> np.ndarray:
    """int8 inputs (n, ...) -> int8 outputs (n, labels) computed by the firmware engine
    (progress: a bar while it runs; None shows one on a terminal)."""
    x = np.ascontiguousarray(x_int8, np.int8).reshape(len(x_int8), -1)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        src.write_bytes(x.tobytes())
        env = dict(os.environ, MICROPYPATH=str(FIRMWARE_DIR))
        proc = run_watched([micropython_binary(), "-X", f"heapsize={heapsize}", "-c", _SCRIPT,
                            str(Path(model_path).resolve()), str(src), str(dst)], env,
                           watch=src, unit_bytes=x.shape[1], unit="clip", desc="firmware",
                           progress=progress)
        if proc.returncode != 0:
            raise HarkError(f"the firmware engine failed on {model_path}:\n"
                            f"{proc.stderr.decode(errors='replace').strip()}")
        out = np.frombuffer(dst.read_bytes(), np.int8)
    return out.reshape(len(x), -1)
