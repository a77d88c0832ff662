"""Audio sources: 16 kHz mono int16 PCM delivered block by block.

Every source has `readinto(buf) -> n`: fill the caller's preallocated
array('h') with up to len(buf) samples, return how many (0 = end of stream).
Nothing is allocated per block; format checks happen once, when opening.
"""
import struct
import sys

import micropython
from micropython import const

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


@micropython.viper
def _to_int16(raw, out, n: int, shift: int):
    """32-bit little-endian I2S slots -> int16: (sample >> shift), saturated."""
    src = ptr16(raw)
    dst = ptr16(out)
    i = 0
    while i < n:
        hi = src[2 * i + 1]
        if hi & 0x8000:
            hi -= 0x10000
        v = (hi * 65536 + src[2 * i]) >> shift
        if v > 32767:
            v = 32767
        elif v < -32768:
            v = -32768
        dst[i] = v
        i += 1


# Bits to drop from a 32-bit slot (left-aligned data: INMP441 24-bit, SPH0645
# 18-bit). Both mics give -26 dBFS at 94 dB SPL, so speech at 0.5-1 m (~60-66 dB
# SPL) sits near -55 dBFS, while Speech Commands clips are ~-24 dBFS (active
# level, median; 10th percentile -38). >> 12 instead of >> 16 adds 24 dB of gain
# to land in the training range; louder sounds saturate. Profiles may override
# with audio.i2s.shift.
MIC_SHIFT = {"inmp441": 12, "sph0645": 12}
_DEFAULT_SHIFT = const(12)


class I2SSource:
    """A MEMS microphone on machine.I2S (RX, mono), configured from the board profile:
    audio {"mic": "inmp441"|"sph0645", "i2s": {id, sck, ws, sd, bits, ibuf, shift?}}."""

    def __init__(self, audio, block, i2s=None):
        cfg = audio.get("i2s") or {}
        self.bits = int(cfg.get("bits", 32))
        if self.bits not in (16, 32):
            raise ValueError("i2s: bits must be 16 or 32, got %d" % self.bits)
        mic = (audio.get("mic") or "inmp441").lower()
        self.shift = int(cfg.get("shift", MIC_SHIFT.get(mic, _DEFAULT_SHIFT)))
        if not 0 <= self.shift <= 16:
            raise ValueError("i2s: shift must be 0..16, got %d" % self.shift)
        if i2s is None:
            try:
                from machine import I2S, Pin
            except ImportError:
                raise RuntimeError("i2s: this port has no machine.I2S; use a board profile "
                                   "with audio source 'wav' or 'stdin' here")
            i2s = I2S(cfg.get("id", 0), sck=Pin(cfg["sck"]), ws=Pin(cfg["ws"]), sd=Pin(cfg["sd"]),
                      mode=I2S.RX, bits=self.bits, format=I2S.MONO,
                      rate=int(audio.get("sample_rate", RATE)), ibuf=int(cfg.get("ibuf", 8192)))
        self.i2s = i2s
        self.raw = bytearray(block * 4) if self.bits == 32 else None

    def readinto(self, buf):
        if self.bits == 16:
            return self.i2s.readinto(buf) // 2
        n = min(len(buf), len(self.raw) // 4)
        got = self.i2s.readinto(self.raw) // 4
        if got > n:
            got = n
        _to_int16(self.raw, buf, got, self.shift)
        return got

    def close(self):
        self.i2s.deinit()
