"""Audio sources from files and pipes: 16 kHz mono int16 PCM delivered block by block.

Every source has `readinto(buf) -> n`: fill the caller's preallocated
array('h') with up to len(buf) samples, return how many (0 = end of stream).
Nothing is allocated per block; format checks happen once, when opening.
The microphone source is in mic.py: a board loads only that one, the host only this.
"""
import sys

import micropython

RATE = 16000


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
            import wavheader    # the header checks: code dropped once the file is open
            self.remaining = wavheader.samples(self.f, path)
        except Exception:
            self.f.close()
            raise
        self.pad = pad_ms * (RATE // 1000)

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
