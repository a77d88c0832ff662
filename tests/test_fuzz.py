"""Property tests: damaged model blobs and WAV files end in the documented error, never a crash,
a hang or another exception.

Host: training/blob.read_blob must return or raise BlobError. Firmware (MicroPython unix port,
many files per process): blob.load must return or raise BlobError; sources.WavSource must
open and read to the end or raise ValueError, both with a message. Damage: truncation, bit
flips, overwritten bytes, appended bytes and edited length/count fields, each both as is
(the CRC / sizes catch it) and with the blob's length and CRC recomputed so the parser
behind the checksum is exercised too.
"""
import json
import os
import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hark.training.blob import BlobError, read_blob, write_blob
from helpers import fmt, riff


# HARK_FUZZ_SCALE=20 searches 20x harder (a few minutes); CI runs the default.
SCALE = int(os.environ.get("HARK_FUZZ_SCALE", "1"))
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
BATCH = 40


def good_blob() -> bytes:
    meta = {"format": 2, "name": "fuzz", "labels": ["_silence_", "yes"],
            "model": {"input": {"shape": [1, 4]}}, "note": "ünïcode"}
    arrays = {"w.a": np.arange(-7, 6, dtype=np.int8), "w.bias": np.arange(5, dtype=np.int32) - 2,
              "fe.t": np.arange(9, dtype=np.uint16), "x": np.array([1, 2, 3], np.uint8)}
    return write_blob(None, meta, arrays)


GOOD = good_blob()


def blob_fields(data: bytes) -> list:
    """Offsets of the u32 length/count fields: meta length, array count, each array's count."""
    (meta_len,) = struct.unpack_from("<I", data, 16)
    pos = 20 + meta_len
    pos += -pos % 4
    fields = [16, pos]
    (n,) = struct.unpack_from("<I", data, pos)
    pos += 4
    for _ in range(n):
        name_len = data[pos]
        code = chr(data[pos + 1 + name_len])
        pos += 2 + name_len
        pos += -pos % 4
        fields.append(pos)
        (count,) = struct.unpack_from("<I", data, pos)
        pos += 4 + count * {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4}[code]
        pos += -pos % 4
    return fields


FIELDS = blob_fields(GOOD)
u32 = st.one_of(st.integers(0, 64), st.integers(0, 2 ** 32 - 1), st.sampled_from([2 ** 31, 2 ** 32 - 1]))


def refit(data: bytes) -> bytes:
    """Recompute the blob's length field and CRC so only the structure is wrong."""
    data = bytearray(data)
    struct.pack_into("<I", data, 8, len(data))
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[16:])) & 0xFFFFFFFF)
    return bytes(data)


@st.composite
def damaged(draw, good=GOOD, fields=FIELDS, fix=refit):
    data = bytearray(good)
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "append", "field", "zero"]))
    if kind == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif kind == "flip":
        for bit in draw(st.lists(st.integers(0, 8 * len(data) - 1), min_size=1, max_size=8)):
            data[bit // 8] ^= 1 << (bit % 8)
    elif kind == "overwrite":
        pos = draw(st.integers(0, len(data) - 1))
        new = draw(st.binary(min_size=1, max_size=16))
        data[pos:pos + len(new)] = new
    elif kind == "append":
        data += draw(st.binary(min_size=1, max_size=64))
    elif kind == "zero":
        pos = draw(st.integers(0, len(data) - 1))
        data[pos:] = bytes(len(data) - pos)
    else:
        struct.pack_into("<I", data, draw(st.sampled_from(fields)), draw(u32))
    data = bytes(data)
    if fix and draw(st.booleans()) and len(data) >= 16:
        data = fix(data)
    return data


@settings(max_examples=400 * SCALE, deadline=None, suppress_health_check=HEALTH)
@given(damaged())
def test_host_reader_raises_blob_error_or_reads(data):
    try:
        meta, arrays = read_blob(data)
    except BlobError as exc:
        assert str(exc).startswith("<bytes>: ") and len(str(exc)) > 30
        return
    assert isinstance(meta, dict) and all(isinstance(a, np.ndarray) for a in arrays.values())


FW_BLOB = """
import sys, blob
for path in sys.argv[1:]:
    try:
        b = blob.load(path)
        print("OK", len(b.arrays))
    except blob.BlobError as e:
        print("BlobError", str(e).replace("\\n", " "))
    except Exception as e:
        print("OTHER", type(e).__name__, e)
print("DONE")
"""


def run_batch(mpy, script, paths, heapsize="2M"):
    res = mpy(script, *paths, heapsize=heapsize, timeout=60)
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and lines and lines[-1] == "DONE", \
        f"crashed (exit {res.returncode}): {res.stderr[-800:]} / {res.stdout[-400:]}"
    assert len(lines) == len(paths) + 1
    return lines[:-1]


@settings(max_examples=6 * SCALE, deadline=None, suppress_health_check=HEALTH)
@given(st.lists(damaged(), min_size=BATCH, max_size=BATCH))
def test_firmware_loader_raises_blob_error_or_loads(mpy, tmp_path, blobs):
    paths = []
    for i, data in enumerate(blobs):
        p = tmp_path / f"b{i}.hark"
        p.write_bytes(data)
        paths.append(str(p))
    for path, data, line in zip(paths, blobs, run_batch(mpy, FW_BLOB, paths)):
        kind, _, msg = line.partition(" ")
        assert kind in ("OK", "BlobError"), f"{data.hex()}: {line}"
        if kind == "BlobError":
            assert msg.startswith(path + ": ") and len(msg) > len(path) + 20, line
        try:
            read_blob(data)
            host = "OK"
        except BlobError as exc:
            host = str(exc)
        # Same verdict, except that MicroPython's json is laxer than CPython's (e.g. "\u0 fc")
        assert kind == "OK" if host == "OK" else (kind == "BlobError" or "not valid UTF-8 JSON" in host), \
            f"host and firmware disagree on {data.hex()}: {line} / host: {host}"


def test_firmware_loader_reads_the_good_blob(mpy, tmp_path):
    p = tmp_path / "good.hark"
    p.write_bytes(GOOD)
    assert run_batch(mpy, FW_BLOB, [str(p), str(tmp_path / "missing.hark")]) == \
        ["OK 4", f"BlobError {tmp_path / 'missing.hark'}: cannot open model blob ([Errno 2] ENOENT); "
                 "check the path or re-export the model with `hark export`"]


def good_wav() -> bytes:
    pcm = (np.sin(np.arange(1000) / 7) * 8000).astype("<i2").tobytes()
    return riff([(b"fmt ", fmt()), (b"LIST", b"INFOISFT\x05\0\0\0hark\0"), (b"data", pcm)])


GOOD_WAV = good_wav()
WAV_FIELDS = [4, 16, 20, 24, 28, 32, 40, 66]  # RIFF size; fmt size, tag+channels, rate, byte rate, align+bits; LIST and data sizes

FW_WAV = """
import sys
from array import array
from sources import WavSource
buf = array("h", bytes(640))
for path in sys.argv[1:]:
    try:
        src = WavSource(path, 0)
        total = 0
        blocks = 0
        while blocks < 100000:
            n = src.readinto(buf)
            if not n:
                break
            total += n
            blocks += 1
        src.close()
        print("OK", total, blocks)
    except ValueError as e:
        print("ValueError", str(e).replace("\\n", " "))
    except Exception as e:
        print("OTHER", type(e).__name__, e)
print("DONE")
"""


@settings(max_examples=6 * SCALE, deadline=None, suppress_health_check=HEALTH)
@given(st.lists(damaged(good=GOOD_WAV, fields=WAV_FIELDS, fix=None), min_size=BATCH, max_size=BATCH))
def test_firmware_wav_reader_raises_value_error_or_reads(mpy, tmp_path, wavs):
    paths = []
    for i, data in enumerate(wavs):
        p = tmp_path / f"w{i}.wav"
        p.write_bytes(data)
        paths.append(str(p))
    for path, data, line in zip(paths, wavs, run_batch(mpy, FW_WAV, paths)):
        kind, _, msg = line.partition(" ")
        assert kind in ("OK", "ValueError"), f"{data.hex()}: {line}"
        if kind == "ValueError":
            assert msg.startswith(path + ": ") and len(msg) > len(path) + 20, line
        else:
            total, blocks = map(int, msg.split())
            assert total <= len(data) // 2 and blocks < 100000, line


def test_wav_fuzz_inputs_are_valid_to_begin_with(mpy, tmp_path):
    p = tmp_path / "good.wav"
    p.write_bytes(GOOD_WAV)
    assert run_batch(mpy, FW_WAV, [str(p)]) == ["OK 1000 4"]
    assert json.loads(json.dumps(read_blob(GOOD)[0]))["name"] == "fuzz"
