"""Audio sources from files and pipes: 16 kHz mono int16 PCM delivered block by block.

Every source has `readinto(buf) -> n`: fill the caller's preallocated
array('h') with up to len(buf) samples, return how many (0 = end of stream).
Nothing is allocated per block; format checks happen once, when opening.
The microphone source is in mic.py: a board loads only that one, the host only this.
"""
import struct
import sys

import micropython

RATE = 16000
_NEED = "hark needs 16000 Hz mono 16-bit PCM"
_EXTENSIBLE = 0xFFFE
_FORMATS = {1: "PCM", 3: "float", 6: "A-law", 7: "mu-law", _EXTENSIBLE: "extensible"}


def _convert_hint(path):
    return "%s: convert with `sox %s -r 16000 -c 1 -b 16 out.wav`" % (_NEED, path)


@micropython.viper
def _zero(buf, start: int, end: int):
    p = ptr16(buf)
    i = start
    while i < end:
        p[i] = 0
        i += 1


@micropython.viper
def _shift_in(buf, nbytes: int, first: int):
    """Move nbytes bytes up by one and put `first` in front (an odd byte carried over)."""
    p = ptr8(buf)
    i = nbytes
    while i > 0:
        p[i] = p[i - 1]
        i -= 1
    p[0] = first


class WavSource:
    """A 16 kHz mono 16-bit PCM WAV file, optionally followed by pad_ms of silence
    (so a word at the very end of a clip still gets a full averaging window)."""

    def __init__(self, path, pad_ms=0):
        self.path = path
        try:
            self.f = open(path, "rb")
        except OSError as exc:
            raise ValueError("%s: cannot open (%s)" % (path, exc))
        try:
            self.remaining = self._parse()
        except Exception:
            self.f.close()
            raise
        self.pad = pad_ms * (RATE // 1000)

    def _fail(self, what):
        raise ValueError("%s: %s; %s" % (self.path, what, _convert_hint(self.path)))

    def _parse(self):
        f = self.f
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(12)
        if len(head) < 12 or head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
            self._fail("not a WAV file (no RIFF/WAVE header)")
        pos = 12
        fmt = None
        while True:
            hdr = f.read(8)
            if len(hdr) < 8:
                if fmt is None:
                    raise ValueError("%s: truncated WAV: no 'fmt ' chunk; the file is damaged, "
                                     "re-export or re-record it" % self.path)
                raise ValueError("%s: truncated WAV: no 'data' chunk; the file is damaged, "
                                 "re-export or re-record it" % self.path)
            cid = hdr[0:4]
            clen = struct.unpack("<I", hdr[4:8])[0]
            pos += 8
            if cid == b"fmt ":
                if clen < 16 or pos + clen > size:
                    raise ValueError("%s: truncated WAV: 'fmt ' chunk is cut short; re-export "
                                     "or re-record it" % self.path)
                fmt = f.read(clen)
                self._check_format(fmt)
            elif cid == b"data":
                if fmt is None:
                    raise ValueError("%s: malformed WAV: 'data' before 'fmt '; re-export it "
                                     "(e.g. with sox)" % self.path)
                avail = size - pos
                if clen == 0xFFFFFFFF:  # streamed writer that never patched the length
                    clen = avail
                elif clen > avail:
                    raise ValueError("%s: truncated WAV: data chunk says %d bytes but only %d "
                                     "follow; re-export or re-record it" % (self.path, clen, avail))
                if clen == 0 and avail >= 2:  # a recorder that stopped before it wrote the length
                    raise ValueError("%s: the data chunk's length is 0 but %d bytes follow (a "
                                     "recording that was never finished?); repair it with "
                                     "`sox --ignore-length %s fixed.wav`" % (self.path, avail, self.path))
                return clen // 2
            else:
                f.seek(pos + clen + (clen & 1))
            pos += clen + (clen & 1)

    def _check_format(self, fmt):
        tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[0:16])
        if tag == _EXTENSIBLE and len(fmt) >= 26:
            tag = struct.unpack("<H", fmt[24:26])[0]
        if tag == 1 and channels == 1 and rate == RATE and bits == 16:
            return
        kind = "" if tag == 1 else " " + _FORMATS.get(tag, "format %d" % tag)
        chans = {1: "mono", 2: "stereo"}.get(channels, "%d channels" % channels)
        self._fail("%d Hz %s %d-bit%s" % (rate, chans, bits, kind))

    def readinto(self, buf):
        n = len(buf)
        if self.remaining:
            want = min(n, self.remaining)
            got = self.f.readinto(buf, 2 * want) // 2
            self.remaining = self.remaining - got if got else 0
            if got:
                return got
        if self.pad:
            got = min(n, self.pad)
            _zero(buf, 0, got)
            self.pad -= got
            return got
        return 0

    def close(self):
        self.f.close()


class StdinSource:
    """Raw s16le mono 16 kHz PCM on stdin (e.g. `sox in.wav -t raw - | micropython main.py --stdin`)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdin.buffer
        self.carry = -1  # a lone byte left over from an odd-length read

    def readinto(self, buf):
        cap = 2 * len(buf)
        while True:
            if self.carry < 0:
                got = self.stream.readinto(buf, cap) or 0
                if not got:
                    return 0
            else:
                got = self.stream.readinto(buf, cap - 1) or 0
                if not got:
                    return 0  # a lone trailing byte is not a sample
                _shift_in(buf, got, self.carry)
                got += 1
                self.carry = -1
            if got & 1:
                self.carry = buf[got // 2] & 0xFF
            if got > 1:
                return got // 2

    def close(self):
        pass
