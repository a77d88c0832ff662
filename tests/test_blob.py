"""Model blob: host writer/reader round trip, host -> device parity, and every error path."""
import json
import struct
import zlib

import numpy as np
import pytest

from hark import REPO
from hark.training.blob import BlobError, read_blob, write_blob

ARRAYS = {
    "w.0.filter": np.arange(300, dtype=np.int64).astype(np.uint8),
    "w.0.bias": np.array([-(2**31), -5, 0, 7, 2**31 - 1], np.int32),
    "fe.window": np.array([-32768, -1, 0, 1, 32767], np.int16),
    "fe.mel": np.array([0, 1, 65535], np.uint16),
    "w.1.neg": np.array([-128, -1, 0, 127, 5], np.int8),
    "fe.u32": np.array([0, 1, 2**32 - 1], np.uint32),
    "w.empty": np.zeros(0, np.int32),
}
META = {"format": 2, "name": "test", "labels": ["_silence_", "_unknown_", "yes"],
        "model": {"input": {"shape": [1, 49, 10, 1]}, "note": "ünïcode ✓"}}


def _blob():
    return write_blob(None, META, ARRAYS)


def _reseal(data: bytes) -> bytes:
    """Fix length and CRC after an edit so the later checks are reached."""
    data = bytearray(data)
    struct.pack_into("<I", data, 8, len(data))
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[16:])) & 0xFFFFFFFF)
    return bytes(data)


def _meta_end(data: bytes) -> int:
    (meta_len,) = struct.unpack_from("<I", data, 16)
    return 20 + meta_len


def _first_record(data: bytes) -> int:
    end = _meta_end(data)
    return end + (-end) % 4 + 4


def _bad_json(data):
    d = bytearray(data)
    d[20] = ord("[")            # '{' -> '[' : no longer valid JSON
    return _reseal(bytes(d))


def _missing_key(data):
    meta = dict(META)
    del meta["labels"]
    raw = json.dumps(meta).encode()
    raw += b" " * ((-(20 + len(raw))) % 4)
    rest = data[_meta_end(data) + (-_meta_end(data)) % 4:]
    return _reseal(data[:16] + struct.pack("<I", len(raw)) + raw + rest)


def _bad_dtype(data):
    d = bytearray(data)
    rec = _first_record(data)
    d[rec + 1 + d[rec]] = ord("f")
    return _reseal(bytes(d))


def _record_overrun(data):
    d = bytearray(data)
    rec = _first_record(data)
    pos = rec + 2 + d[rec]
    pos += (-pos) % 4
    struct.pack_into("<I", d, pos, 10**6)
    return _reseal(bytes(d))


def _version(v):
    def make(data):
        d = bytearray(data)
        struct.pack_into("<H", d, 4, v)
        return bytes(d)
    return make


def _crc(data):
    d = bytearray(data)
    d[-5] ^= 0x40
    return bytes(d)


CORRUPTIONS = {
    # name: (make bad bytes, words the message must contain)
    "magic": (lambda d: b"HARX" + d[4:], ["not a hark model blob", "hark export"]),
    "old_version": (_version(2), ["version 2 is not supported", "hark export"]),
    "new_version": (_version(4), ["version 4 is not supported", "update"]),
    "truncated": (lambda d: d[:-7], ["truncated", "hark export"]),
    "trailing": (lambda d: d + b"\0\0\0\0", ["trailing", "hark export"]),
    "crc": (_crc, ["CRC", "corrupted", "hark export"]),
    "json": (_bad_json, ["JSON", "hark export"]),
    "missing_key": (_missing_key, ["labels", "hark export"]),
    "dtype": (_bad_dtype, ["dtype", "'f'", "hark export"]),
    "overrun": (_record_overrun, ["runs past the end", "hark export"]),
    "tiny": (lambda d: d[:10], ["too short", "hark export"]),
}


def test_host_round_trip_is_identical(tmp_path):
    path = tmp_path / "m.hark"
    data = write_blob(path, META, ARRAYS)
    assert path.read_bytes() == data and len(data) % 4 == 0
    for source in (path, data):
        meta, arrays = read_blob(source)
        assert meta == META
        assert list(arrays) == list(ARRAYS)
        for name, arr in ARRAYS.items():
            assert arrays[name].dtype == arr.dtype, name
            np.testing.assert_array_equal(arrays[name], arr)


def test_writer_rejects_bad_input():
    with pytest.raises(BlobError, match="float"):
        write_blob(None, META, {"w.x": np.zeros(3, np.float32)})
    with pytest.raises(BlobError, match="labels"):
        write_blob(None, {"format": 2, "model": {}}, {})


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_host_reader_errors(kind):
    make, words = CORRUPTIONS[kind]
    with pytest.raises(BlobError) as e:
        read_blob(make(_blob()))
    for w in words:
        assert w in str(e.value), (kind, str(e.value))


DEVICE_DUMP = """
import sys, binascii, blob
b = blob.load(sys.argv[1])
print(repr(b.meta))
for name in sorted(b.arrays):
    a = b.arrays[name]
    s = 0
    for v in a:
        s += v
    print(name, len(a), s, binascii.crc32(a))
"""


def test_device_reads_what_the_host_wrote(tmp_path, mpy):
    path = tmp_path / "m.hark"
    write_blob(path, META, ARRAYS)
    r = mpy(DEVICE_DUMP, path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert eval(lines[0]) == META
    expect = [f"{n} {a.size} {int(a.astype(np.int64).sum())} {zlib.crc32(a.tobytes())}"
              for n, a in sorted(ARRAYS.items())]
    assert lines[1:] == expect


DEVICE_ERROR = """
import sys, blob
try:
    blob.load(sys.argv[1])
    print("LOADED")
except blob.BlobError as e:
    print("BlobError", isinstance(e, ValueError), e)
"""


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_device_reader_errors(kind, tmp_path, mpy):
    make, words = CORRUPTIONS[kind]
    path = tmp_path / "bad.hark"
    path.write_bytes(make(_blob()))
    r = mpy(DEVICE_ERROR, path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("BlobError True"), r.stdout
    assert str(path) in r.stdout
    for w in words:
        assert w in r.stdout, (kind, r.stdout)


def test_device_crc_matches_binascii(mpy):
    """The loader's CRC (its value kept in an array, never a heap int) is zlib's, also continued."""
    r = mpy("import binascii, blob\n"
            "d = bytes(range(256)) * 5 + b'hark'\n"
            "print(blob.crc32(d) == binascii.crc32(d),"
            " blob.crc32(d[7:], blob.crc32(d[:7])) == binascii.crc32(d),"
            " blob.crc32(b'') == 0, blob.crc32(b'\\xff' * 3) == binascii.crc32(b'\\xff' * 3))")
    assert r.stdout.split() == ["True"] * 4, r.stdout + r.stderr


SHIPPED = sorted(p.with_suffix("") for p in (REPO / "models").glob("*.tflite")
                 if p.with_suffix(".hark").exists())


@pytest.mark.parametrize("stem", SHIPPED, ids=lambda p: p.name)
def test_shipped_blob_holds_its_tflite_plan(stem):
    """Each models/*.hark carries exactly the weights and engine plan that the .tflite beside it
    gives today (after a format change `make models` repacks them)."""
    from hark.training import graph, plan
    model, arrays = graph.from_tflite(stem.with_suffix(".tflite").read_bytes())
    stream, want = plan.build(model["graph"], arrays)
    meta, stored = read_blob(stem.with_suffix(".hark"))
    assert meta["model"]["stream"] == stream
    for name, arr in want.items():
        assert stored[name].dtype == arr.dtype and np.array_equal(stored[name], arr), name
    assert {n for n in stored if not n.startswith("fe.")} == set(want)


def test_host_and_firmware_know_the_same_version():
    from hark.training import blob
    firmware = (REPO / "firmware" / "blob.py").read_text()
    assert f"\nVERSION = {blob.VERSION}\n" in firmware
