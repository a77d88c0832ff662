"""A minimal but valid model blob (docs/blob-format.md) for tests that need a model file's size and meta."""
import json
import struct
import zlib

LABELS = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def write_blob(path, payload_bytes=1000, arena_bytes=12000, seed=1, labels=LABELS):
    """meta + one int8 array of payload_bytes pseudo-random weights; arena_bytes None leaves it out."""
    model = {"input": {"shape": [1, 49, 10, 1], "scale": 0.1, "zero_point": 0}}
    if arena_bytes is not None:
        model["arena_bytes"] = arena_bytes
    meta = json.dumps({"format": 1, "name": "fake", "labels": labels, "model": model}).encode()
    body = struct.pack("<I", len(meta)) + meta + b"\0" * (-len(meta) % 4) + struct.pack("<I", 1)
    name = b"w.fake"
    record = bytes([len(name)]) + name + b"b"
    record += b"\0" * (-(16 + len(body) + len(record)) % 4)
    data = bytes((i * 2654435761 + seed * 97) >> 13 & 0xFF for i in range(payload_bytes))
    body += record + struct.pack("<I", payload_bytes) + data
    body += b"\0" * (-len(body) % 4)
    total = 16 + len(body)
    blob = b"HARK" + struct.pack("<HHI", 1, 0, total) + struct.pack("<I", zlib.crc32(body)) + body
    with open(path, "wb") as f:
        f.write(blob)
    return path
