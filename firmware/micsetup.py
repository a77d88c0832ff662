"""Set-up of mic.I2SSource: the checks of the profile's microphone settings and the machine.I2S it
reads (a board's audio; the host never loads this). microphone() removes this module from
sys.modules when done, so its code leaves the heap once the microphone runs.
"""
import sys

# Bits to drop from a 32-bit slot (left-aligned data: INMP441 24-bit, SPH0645
# 18-bit). Both mics give -26 dBFS at 94 dB SPL, so speech at 0.5-1 m (~60-66 dB
# SPL) sits near -55 dBFS, while Speech Commands clips are ~-24 dBFS (active
# level, median; 10th percentile -38). >> 12 instead of >> 16 adds 24 dB of gain
# to land in the training range; louder sounds saturate. Profiles may override
# with audio.i2s.shift.
MIC_SHIFT = {"inmp441": 12, "sph0645": 12}


def microphone(src, audio, block, i2s):
    """Set up mic.I2SSource `src` (its docstring has the settings); i2s: a machine.I2S, or None to
    make one from the profile."""
    cfg = audio.get("i2s") or {}
    src.bits = int(cfg.get("bits", 32))
    if src.bits not in (16, 32):
        raise ValueError("i2s: bits must be 16 or 32, got %d" % src.bits)
    mic = (audio.get("mic") or "inmp441").lower()
    src.shift = int(cfg.get("shift", MIC_SHIFT.get(mic, 12)))
    if not 0 <= src.shift <= 16:
        raise ValueError("i2s: shift must be 0..16, got %d" % src.shift)
    if i2s is None:
        try:
            from machine import I2S, Pin
        except ImportError:
            raise RuntimeError("i2s: this port has no machine.I2S; use a board profile "
                               "with audio source 'wav' or 'stdin' here")
        i2s = I2S(cfg.get("id", 0), sck=Pin(cfg["sck"]), ws=Pin(cfg["ws"]), sd=Pin(cfg["sd"]),
                  mode=I2S.RX, bits=src.bits, format=I2S.MONO,
                  rate=int(audio.get("sample_rate", 16000)), ibuf=int(cfg.get("ibuf", 8192)))
    src.i2s = i2s
    src.raw = bytearray(block * 4) if src.bits == 32 else None
    src.dc = [0, 0, 0] if cfg.get("dc_block", True) else None
    sys.modules.pop(__name__, None)     # set-up code: not needed while audio flows
