"""The microphone source: a MEMS microphone on machine.I2S, 16 kHz mono int16 PCM.

Same interface as sources.py (`readinto(buf) -> n`, nothing allocated per block); kept apart
so a board does not load the WAV parser and the host does not load this. The settings' checks
and the I2S set-up are in micsetup.py, dropped once the microphone runs.
"""
import micropython


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


class I2SSource:
    """A MEMS microphone on machine.I2S (RX, mono), configured from the board profile:
    audio {"mic": "inmp441"|"sph0645", "i2s": {id, sck, ws, sd, bits, ibuf, shift?, dc_block?}}.
    dc_block (default true) removes the microphone's DC offset (_remove_dc)."""

    def __init__(self, audio, block, i2s=None):
        import micsetup         # the checks and set-up: code dropped once the microphone runs
        micsetup.microphone(self, audio, block, i2s)

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
