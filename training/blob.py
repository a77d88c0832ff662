"""Host writer/reader of the hark model blob (docs/blob-format.md, format version 3).

The firmware reads the same bytes with firmware/blob.py; tests/test_blob.py ties the two.
meta["model"]["graph"] is not stored as such: write_blob turns it into the engine's plan
(training/plan.py), the int32 records the device runs from.
"""
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from . import plan
from .blobmeta import FIX, MAGIC, REQUIRED_META, VERSION, BlobError, read_meta

DTYPES = {"b": np.int8, "B": np.uint8, "h": np.int16, "H": np.uint16, "i": np.int32, "I": np.uint32}


def _pad4(n: int) -> int:
    return (-n) % 4


def write_blob(path, meta: dict, arrays: dict) -> bytes:
    """Serialise meta and flat arrays; write to path unless it is None; return the bytes."""
    for key in REQUIRED_META:
        if key not in meta:
            raise BlobError(f"blob meta lacks required key {key!r}; add it before writing")
    model = meta["model"]
    if isinstance(model, dict) and "graph" in model:
        stream, arrays = plan.build(model["graph"], arrays)
        model = {k: v for k, v in model.items() if k != "graph"}
        model["stream"] = stream
        meta = dict(meta, model=model)
    meta_bytes = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode("utf-8")
    body = bytearray(struct.pack("<I", len(meta_bytes)) + meta_bytes)
    body += bytes(_pad4(16 + len(body)))
    body += struct.pack("<I", len(arrays))
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        code = next((k for k, v in DTYPES.items() if arr.dtype.kind + str(arr.dtype.itemsize)
                     == np.dtype(v).kind + str(np.dtype(v).itemsize)), None)
        if code is None:
            raise BlobError(f"array {name!r} has dtype {arr.dtype}; use one of int8/uint8/int16/uint16/int32/uint32")
        raw_name = name.encode("ascii")
        if not 0 < len(raw_name) < 256:
            raise BlobError(f"array name {name!r} must be 1..255 ASCII characters")
        body += bytes([len(raw_name)]) + raw_name + code.encode()
        body += bytes(_pad4(16 + len(body)))
        data = np.ascontiguousarray(arr.reshape(-1), dtype=np.dtype(DTYPES[code]).newbyteorder("<")).tobytes()
        body += struct.pack("<I", arr.size) + data
        body += bytes(_pad4(16 + len(body)))
    total = 16 + len(body)
    blob = MAGIC + struct.pack("<HHII", VERSION, 0, total, zlib.crc32(body) & 0xFFFFFFFF) + bytes(body)
    if path is not None:
        Path(path).write_bytes(blob)
    return blob


def read_blob(path_or_bytes):
    """Parse and validate a blob; returns (meta, {name: 1-D numpy array})."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, where = bytes(path_or_bytes), "<bytes>"
    else:
        where = str(path_or_bytes)
        try:
            data = Path(path_or_bytes).read_bytes()
        except OSError as e:
            raise BlobError(f"{where}: cannot read model blob ({e}); check the path or {FIX}") from e

    def fail(what):
        raise BlobError(f"{where}: {what}")

    meta, pos = read_meta(data, where)
    total = len(data)
    pos += _pad4(pos)
    (n_arrays,) = struct.unpack_from("<I", data, pos)
    pos += 4
    arrays = {}
    for k in range(n_arrays):
        if pos + 1 > total:
            fail(f"array record {k} runs past the end of the file; {FIX}")
        name_len = data[pos]
        if pos + 2 + name_len > total:
            fail(f"array record {k} runs past the end of the file; {FIX}")
        try:
            name = data[pos + 1:pos + 1 + name_len].decode("ascii")
        except UnicodeDecodeError:
            fail(f"array record {k} has a name that is not ASCII; {FIX}")
        code = chr(data[pos + 1 + name_len])
        if code not in DTYPES:
            fail(f"array {name!r} has unknown dtype code {code!r}; {FIX} or update hark")
        pos += 2 + name_len
        pos += _pad4(pos)
        if pos + 4 > total:
            fail(f"array {name!r} runs past the end of the file; {FIX}")
        (count,) = struct.unpack_from("<I", data, pos)
        pos += 4
        dt = np.dtype(DTYPES[code]).newbyteorder("<")
        end = pos + count * dt.itemsize
        if end > total:
            fail(f"array {name!r} ({count} elements) runs past the end of the file; {FIX}")
        arrays[name] = np.frombuffer(data, dt, count, pos).astype(DTYPES[code])
        pos = end + _pad4(end)
    if pos != total:
        fail(f"{total - pos} unexpected bytes after the last array; {FIX}")
    return meta, arrays
