# Device reader of the hark model blob (docs/blob-format.md, version 3).
# The file is read once, each array straight into its own typed array (no second copy);
# the CRC is checked first in a streaming pass through a 256-byte buffer.
import array
import gc
import json
import struct

import micropython

MAGIC = b"HARK"
VERSION = 3
TYPECODES = "bBhHiI"
_SIZE = {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4}
FIX = "re-export the model with `hark export`"


class BlobError(ValueError):
    pass


@micropython.viper
def crc32_start(state: ptr32):
    """state (array "I" of 17): the CRC-32 (zlib's) so far in [0], 0 now, then its table for
    four bits at a time (uzlib's, as binascii.crc32's)."""
    poly = uint(0xEDB88320)
    for n in range(16):
        c = uint(n)
        for _ in range(4):
            if c & 1:
                c = (c >> 1) ^ poly
            else:
                c = c >> 1
        state[n + 1] = c
    state[0] = 0


@micropython.viper
def crc32_update(buf: ptr8, n: int, state: ptr32):
    """Continue the CRC-32 in state over n bytes of buf. The value stays in the array, never a
    Python int: on 32-bit ports an int >= 2**30 is a heap object, binascii.crc32's running
    values are one or not as the file's bytes fall, and a stale one the conservative GC keeps
    would move where the weights land (and the smallest heap that starts) with the model's
    values (QEMU: 84,768 to 85,664 B for the default model with its weight bytes shuffled)."""
    t = ptr32(int(state) + 4)
    c = uint(state[0]) ^ uint(0xFFFFFFFF)
    i = 0
    while i < n:
        c ^= uint(buf[i])
        c = uint(t[c & 15]) ^ (c >> 4)
        c = uint(t[c & 15]) ^ (c >> 4)
        i += 1
    state[0] = c ^ uint(0xFFFFFFFF)


@micropython.viper
def crc32_half(state: ptr32, high: int) -> int:
    """The CRC's low or high 16 bits: a small int on every port."""
    c = uint(state[0])
    return int(c >> 16) if high else int(c & 0xFFFF)


def crc32(data, crc=0):
    """binascii.crc32 (for ports without binascii, and the tests' check of the loader's)."""
    state = array.array("I", range(17))
    crc32_start(state)
    state[0] = crc
    crc32_update(data, len(data), state)
    return state[0]


class Blob:
    """A loaded blob: .meta (dict), .arrays (name -> array.array of the blob's dtype; fe.window,
    fe.twiddle and fe.dct compacted as they are read: _window, _twiddles, _dct).
    No methods on purpose: a method would tie every loaded blob to this module's globals, so
    the loader's code could not be freed after start-up."""


def _typed(code, count):
    # range() has a length, so the array is sized once with no temporary buffer
    return bytearray(count) if code == "B" else array.array(code, range(count))


def _window(read, fail):
    # fe.window (512 uint16, symmetric: w[i] = w[512 - i]) as its first half, w[0..256]: the
    # second half streams through a small buffer and is only compared
    win = array.array("H", range(257))
    read(win, 514)
    part = array.array("H", range(85))
    for at in range(257, 512, 85):
        read(part, 170)
        for i in range(85):
            if part[i] != win[512 - at - i]:
                fail("front-end window is not symmetric; " + FIX)
    return win


def _twiddles(read, back, fail):
    # fe.twiddle (W512^n = cos - j sin, n < 384, Q15, int16 pairs) as cos over the first
    # quadrant, n <= 128: 258 B instead of 1,536 (uint16: cos 0 is 32768). Two passes through a
    # small buffer: the quadrant, then every entry checked against it, so the FFT's twiddles
    # stay exactly the exporter's
    q = array.array("H", range(129))
    part = array.array("h", range(128))
    q[0] = 32768
    for at in range(0, 258, 128):   # entries 0..383: cos n for n <= 128 (n = 128: index 256)
        read(part, 256)
        for i in range(0, 128, 2):
            if 0 < at + i <= 256:
                q[(at + i) >> 1] = part[i] & 0xFFFF
    back(768)
    for at in range(0, 768, 128):
        read(part, 256)
        for i in range(0, 128, 2):
            n = (at + i) >> 1
            if not n:
                continue
            if n <= 128:
                c, s = q[n], q[128 - n]
            elif n <= 256:
                c, s = -q[256 - n], q[n - 128]
            else:
                c, s = -q[n - 256], -q[384 - n]
            if part[i] != c or part[i + 1] != -s:
                fail("front-end twiddle %d is not the quarter-wave table's; %s" % (n, FIX))
    return q


def _dct(read, count, fail):
    # fe.dct (int32 in the file) as int16: the exporter keeps it in range
    m = array.array("h", range(count))
    part = array.array("i", range(40))
    for at in range(0, count, 40):
        n = min(40, count - at)
        read(part, 4 * n)
        for i in range(n):
            v = part[i]
            if v > 32767 or v < -32768:
                fail("front-end DCT matrix does not fit int16; " + FIX)
            m[at + i] = v
    return m


def load(path, skip=()):
    """Read and validate a blob; raises BlobError naming the file, the problem and the fix.
    Arrays whose names start with a prefix in `skip` are not read (e.g. the windowed plan of a
    model that streams: 1.4 KB less at the start-up peak)."""
    def fail(what):
        raise BlobError("%s: %s" % (path, what))

    try:
        f = open(path, "rb")
    except OSError as e:
        fail("cannot open model blob (%s); check the path or %s" % (e, FIX))
    try:
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(16)
        if len(head) < 16 or size < 20:
            fail("file is only %d bytes, too short for a hark blob; %s" % (size, FIX))
        if head[:4] != MAGIC:
            fail("not a hark model blob (magic %r, expected %r); %s" % (bytes(head[:4]), MAGIC, FIX))
        # the CRC as 16-bit halves: as one uint32 it would be a heap int (above 2**30) or not
        # depending on the file's bytes, and so would move where everything after it lands
        version, _, total, want_lo, want_hi = struct.unpack("<HHIHH", head[4:16])
        if total != size:
            fail("length field says %d bytes but the file has %d (%s); %s"
                 % (total, size, "truncated" if size < total else "trailing bytes", FIX))
        # CRC before the version (streamed through a small buffer): a flipped bit anywhere,
        # the version field included, is reported as corruption
        chunk = bytearray(256)
        crc = array.array("I", range(17))
        crc32_start(crc)
        left = total - 16
        while left > 0:
            n = f.readinto(chunk) if left >= 256 else f.readinto(memoryview(chunk)[:left])
            if not n:
                fail("file is truncated while reading; %s" % FIX)
            crc32_update(chunk, n, crc)
            left -= n
        if crc32_half(crc, 0) != want_lo or crc32_half(crc, 1) != want_hi:
            fail("CRC-32 mismatch (file corrupted); %s and copy it again" % FIX)
        del chunk, crc
        gc.collect()
        if version != VERSION:
            fail("blob format version %d is not supported (this firmware reads %d); %s"
                 % (version, VERSION, FIX if version < VERSION else "update the firmware"))
        f.seek(16)
        pos = 16
        small = bytearray(4)
        # messages are formatted only on failure: per-record garbage would fragment the heap
        # between the weight arrays

        def read_into(buf, n, what, arg=None):
            nonlocal pos
            past = pos + n > total
            if past or f.readinto(buf, n) != n:
                fail(("%s runs past the end of the file; %s" if past else
                      "%s: short read (file truncated); %s")
                     % (what if arg is None else what % arg, FIX))
            pos += n

        def back(n):
            nonlocal pos
            f.seek(-n, 1)
            pos -= n

        def read_u32(what, arg=None):
            read_into(small, 4, what, arg)
            return struct.unpack("<I", small)[0]

        def skip_pad(what, arg=None):
            pad = (-pos) & 3
            if pad:
                read_into(small, pad, what, arg)

        meta_len = read_u32("meta length")
        if pos + meta_len > total:  # before allocating: a damaged length must not exhaust the heap
            fail("meta (%d bytes) runs past the end of the file; %s" % (meta_len, FIX))
        # the meta is parsed after the arrays are read: its many small objects would
        # otherwise fragment the heap before the large weight arrays are allocated
        raw = bytearray(meta_len)
        read_into(raw, meta_len, "meta (%d bytes)", meta_len)
        skip_pad("meta padding")
        n_arrays = read_u32("array count")
        arrays = {}
        record = bytearray(257)  # reused for every record's name and dtype
        for k in range(n_arrays):
            read_into(record, 1, "array record %d", k)
            n = record[0]
            read_into(record, n + 1, "array record %d", k)
            for i in range(n):
                if record[i] > 127:
                    fail("array record %d has a name that is not ASCII; %s" % (k, FIX))
            name = str(memoryview(record)[:n], "ascii")
            code = chr(record[n])
            if code not in TYPECODES:
                fail("array %r has unknown dtype code %r; %s or update the firmware" % (name, code, FIX))
            skip_pad("array %r", name)
            count = read_u32("array %r", name)
            if pos + count * _SIZE[code] > total:
                fail("array %r (%d elements) runs past the end of the file; %s" % (name, count, FIX))
            nbytes = count * _SIZE[code]
            for prefix in skip:
                if name.startswith(prefix):
                    f.seek(nbytes, 1)
                    pos += nbytes
                    break
            else:
                # front-end tables in less heap than the file stores them, read through small
                # buffers: no full-size copy is made, so none leaves a hole in the heap
                # (frontend.py reads them in these forms; other sizes are its to refuse)
                if name == "fe.window" and code == "H" and count == 512:
                    arr = _window(lambda buf, n: read_into(buf, n, "array %r", name), fail)
                elif name == "fe.twiddle" and code == "h" and count == 768:
                    arr = _twiddles(lambda buf, n: read_into(buf, n, "array %r", name), back, fail)
                elif name == "fe.dct" and code == "i":
                    arr = _dct(lambda buf, n: read_into(buf, n, "array %r", name), count, fail)
                else:
                    arr = _typed(code, count)
                    read_into(arr, nbytes, "array %r", name)
                arrays[name] = arr
            skip_pad("array %r", name)
        if pos != total:
            fail("%d unexpected bytes after the last array; %s" % (total - pos, FIX))
        try:
            meta = json.loads(raw)
        except (ValueError, UnicodeError) as e:
            fail("meta is not valid JSON (%s); %s" % (e, FIX))
        del raw
        if not isinstance(meta, dict):
            fail("meta is not a JSON object; %s" % FIX)
        for key in ("format", "labels", "model"):
            if key not in meta:
                fail("meta lacks required key %r; %s" % (key, FIX))
        b = Blob()
        b.meta = meta
        b.arrays = arrays
        return b
    finally:
        f.close()
