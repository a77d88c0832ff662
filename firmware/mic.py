"""The microphone source: a MEMS microphone on machine.I2S, 16 kHz mono int16 PCM.

Same interface as sources.py (`readinto(buf) -> n`, nothing allocated per block); kept apart
so a board does not load the WAV parser and the host does not load this.
"""
import micropython
from micropython import const

_RATE = const(16000)


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


@micropython.viper
def _remove_dc(buf, n: int, state):
    """In place, int16: y[i] = x[i] - x[i-1] + (255/256) y[i-1], a DC blocker with its corner
    near 10 Hz (below the lowest mel band). MEMS microphones (the SPH0645 above all) carry a DC
    offset that the mic gain below makes large, and training clips have none. state: a list
    [previous x, y in Q8, primed] (small ints: read and written once per block, nothing
    allocated); the first sample primes it, so a DC offset makes no click."""
    b = ptr16(buf)
    prev = int(state[0])
    acc = int(state[1])
    if not int(state[2]) and n > 0:
        prev = b[0]
        if prev & 0x8000:
            prev -= 0x10000
        state[2] = 1
    i = 0
    while i < n:
        x = b[i]
        if x & 0x8000:
            x -= 0x10000
        acc += (x - prev) * 256 - (acc >> 8)
        prev = x
        y = acc >> 8
        if y > 32767:
            y = 32767
        elif y < -32768:
            y = -32768
        b[i] = y
        i += 1
    state[0] = prev
    state[1] = acc


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
    audio {"mic": "inmp441"|"sph0645", "i2s": {id, sck, ws, sd, bits, ibuf, shift?, dc_block?}}.
    dc_block (default true) removes the microphone's DC offset (_remove_dc)."""

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
                      rate=int(audio.get("sample_rate", _RATE)), ibuf=int(cfg.get("ibuf", 8192)))
        self.i2s = i2s
        self.raw = bytearray(block * 4) if self.bits == 32 else None
        self.dc = [0, 0, 0] if cfg.get("dc_block", True) else None

    def readinto(self, buf):
        if self.bits == 16:
            got = self.i2s.readinto(buf) // 2
        else:
            n = min(len(buf), len(self.raw) // 4)
            got = self.i2s.readinto(self.raw) // 4
            if got > n:
                got = n
            _to_int16(self.raw, buf, got, self.shift)
        if self.dc is not None:
            _remove_dc(buf, got, self.dc)
        return got

    def close(self):
        self.i2s.deinit()
