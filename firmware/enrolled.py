"""The enrolled-words file (enroll.py writes it): read and check it. Imported by start-up only
when the file exists (and dropped before audio runs) and by enroll mode; small on purpose, since
start-up imports it when the model is already in the heap.

File: b"HKEW", u16 version, u16 frame width (the front end's coefficients), u32 CRC-32 of the
model blob (its header's: its front end made the frames), u32 CRC-32 of the body; body: u8
words, then per word: u8 name length, name (ASCII), u16 threshold (DTW distance per template
frame), u8 examples, u8 frames per example, then the examples' frames (width bytes each, the
front end's int8 in offset form q + 128). Version 1 (firmware before DTW) held one pooled
embedding per example; it is refused with what to do (enroll again).
"""
import struct
import sys

MAGIC = b"HKEW"
VERSION = 2
_HEAD = "<4sHHII"
_FIX = "enroll the words again (`hark enroll`)"


def model_crc(model):
    """The CRC-32 in the model blob's header: which model the templates belong to."""
    with open(model, "rb") as f:
        head = f.read(16)
    return struct.unpack_from("<I", head, 12)[0] if len(head) == 16 else 0


def crc32(data, crc=0):
    try:
        from binascii import crc32 as native
    except ImportError:     # a port built without it: the loader's own (viper)
        from blob import crc32 as native
    return native(data, crc)


def read(path):
    """(model crc, frame width, [(name, threshold, frames per example (bytes), the examples'
    frames)]); ValueError saying what is wrong."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError("%s: cannot read (%s)" % (path, exc))
    if len(data) < 16 or data[:4] != MAGIC:
        raise ValueError("%s is not a hark enrolled-words file; delete it or %s" % (path, _FIX))
    _, version, width, crc_model, crc = struct.unpack_from(_HEAD, data)
    if version != VERSION:
        raise ValueError("%s has version %d, this firmware reads %d (%s); %s"
                         % (path, version, VERSION, "words recorded by an older firmware"
                            if version < VERSION else "a newer firmware's", _FIX))
    body = memoryview(data)[16:]
    if crc32(body) != crc:
        raise ValueError("%s: checksum mismatch (file damaged); %s" % (path, _FIX))
    words = []
    pos = 1
    try:
        for _ in range(body[0]):
            n = body[pos]
            name = str(bytes(body[pos + 1:pos + 1 + n]), "ascii")
            pos += 1 + n
            thr, count = struct.unpack_from("<HB", body, pos)
            lengths = bytes(body[pos + 3:pos + 3 + count])
            pos += 3 + count
            n = sum(lengths) * width
            if not count or pos + n > len(body):
                pos = -1
                break
            words.append((name, thr, lengths, bytes(body[pos:pos + n])))
            pos += n
    except (IndexError, ValueError):
        pos = -1
    if pos != len(body):
        raise ValueError("%s: records do not fill the file; %s" % (path, _FIX))
    return crc_model, width, words


def load(path, model, width, labels, err=sys.stderr):
    """The words for match.Matcher, or [] (with a one-line warning) if the file cannot be used:
    the board still listens for its model's words."""
    try:
        crc, have, words = read(path)
        if crc != model_crc(model) or have != width:
            raise ValueError("%s was recorded with another model; %s" % (path, _FIX))
        for w in words:
            if w[0] in labels:
                raise ValueError("%s: %r is also a word of the model; %s" % (path, w[0], _FIX))
    except ValueError as exc:
        print("hark: enrolled words ignored:", exc, file=err)
        return []
    return words
