"""A model blob's header and meta, checked without numpy (docs/blob-format.md).

training/blob.py reads the arrays that follow; `hark deploy` and `hark simulate --score`
(tools/boards.py) need the meta only and run where `make demo` installed no numpy. The checks
are the firmware's at boot (firmware/blob.py), so a blob a board would refuse never reaches it.
"""
import json
import struct
import zlib

MAGIC = b"HARK"
VERSION = 3
REQUIRED_META = ("format", "labels", "model")
FIX = "re-export the model with `hark export`"
# The header is outside the CRC: a version far beyond the current one is a flipped bit, not a
# blob from a newer hark.
PLAUSIBLE_NEWER_VERSIONS = 8


def header_crc(path) -> int:
    """The CRC-32 a blob's header holds (of all that follows it): what enrolled words and the
    enrollment cohort are tied to (firmware/enrolled.py model_crc reads the same bytes)."""
    with open(path, "rb") as f:
        head = f.read(16)
    return struct.unpack_from("<I", head, 12)[0]


class BlobError(ValueError):
    """A blob that cannot be read: the message names the file, the problem and the fix."""


def read_meta(data: bytes, where: str):
    """(meta, offset just past it) of the blob bytes read from `where`. The CRC is checked before
    the version, so a flipped bit anywhere is reported as corruption."""
    def fail(what):
        raise BlobError(f"{where}: {what}")

    if len(data) < 20:
        fail(f"file is only {len(data)} bytes, too short for a hark blob; {FIX}")
    if data[:4] != MAGIC:
        fail(f"not a hark model blob (magic {data[:4]!r}, expected {MAGIC!r}); {FIX}")
    version, _, total, crc = struct.unpack_from("<HHII", data, 4)
    if total != len(data):
        state = "truncated" if len(data) < total else "has trailing bytes"
        fail(f"length field says {total} bytes but the file has {len(data)} ({state}); {FIX}")
    if zlib.crc32(data[16:]) & 0xFFFFFFFF != crc:
        fail(f"CRC-32 mismatch (file corrupted); {FIX} and copy it again")
    if version > VERSION + PLAUSIBLE_NEWER_VERSIONS:
        fail(f"blob format version {version} is not one hark has ever written (the header is "
             f"corrupted); copy the blob again or {FIX}")
    if version != VERSION:
        fail(f"blob format version {version} is not supported (this reader knows {VERSION}); "
             + (f"{FIX} (or repack it: `hark export --tflite`)" if version < VERSION
                else "update hark"))
    (meta_len,) = struct.unpack_from("<I", data, 16)
    pos = 20 + meta_len
    if pos + 4 > total:
        fail(f"meta length {meta_len} runs past the end of the file; {FIX}")
    try:
        meta = json.loads(data[20:pos].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        fail(f"meta is not valid UTF-8 JSON ({e}); {FIX}")
    if not isinstance(meta, dict):
        fail(f"meta is not a JSON object; {FIX}")
    for key in REQUIRED_META:
        if key not in meta:
            fail(f"meta lacks required key {key!r}; {FIX}")
    return meta, pos
