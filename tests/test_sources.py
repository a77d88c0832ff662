"""firmware/sources.py in the MicroPython unix port: WAV parsing and its error
messages, stdin PCM (including odd-length reads), I2S sample conversion."""
import struct

import numpy as np
import pytest
import soundfile as sf

from helpers import fmt, riff

READ_ALL = """
import sys
from array import array
from sources import WavSource
src = WavSource(sys.argv[1], int(sys.argv[2]))
buf = array("h", bytes(2 * 320))
total = 0
check = 0
blocks = 0
while True:
    n = src.readinto(buf)
    if not n:
        break
    for i in range(n):
        check = (check * 31 + buf[i]) & 0xFFFFFF
    total += n
    blocks += 1
print(total, check, blocks)
"""


def checksum(samples):
    c = 0
    for s in samples.astype(int):
        c = (c * 31 + s) & 0xFFFFFF
    return c


@pytest.fixture
def pcm():
    rng = np.random.default_rng(1)
    return rng.integers(-32768, 32767, 16000 + 123).astype(np.int16)


def test_reads_every_sample_in_blocks(mpy, tmp_path, pcm):
    path = tmp_path / "clip.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    res = mpy(READ_ALL, path, 0)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == [str(len(pcm)), str(checksum(pcm)), str(-(-len(pcm) // 320))]


def test_pad_adds_silence(mpy, tmp_path, pcm):
    path = tmp_path / "clip.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    res = mpy(READ_ALL, path, 250)
    padded = np.concatenate([pcm, np.zeros(4000, np.int16)])
    assert res.stdout.split()[:2] == [str(len(padded)), str(checksum(padded))]


def test_skips_unknown_and_odd_chunks_and_accepts_extensible(mpy, tmp_path, pcm):
    ext = fmt(tag=0xFFFE) + struct.pack("<HHI", 22, 16, 4) + struct.pack("<H", 1) + bytes(14)
    data = pcm[:1001].tobytes()
    path = tmp_path / "odd.wav"
    path.write_bytes(riff([(b"JUNK", b"xyz"), (b"fmt ", ext), (b"LIST", b"INFOabcde"),
                           (b"data", data), (b"cue ", b"1234")]))
    res = mpy(READ_ALL, path, 0)
    assert res.stdout.split()[:2] == ["1001", str(checksum(pcm[:1001]))], res.stdout


@pytest.mark.parametrize("name,make,what", [
    ("cd.wav", lambda p: sf.write(p, np.zeros((100, 2), np.int16), 44100, subtype="PCM_16"),
     "44100 Hz stereo 16-bit"),
    ("fast.wav", lambda p: sf.write(p, np.zeros(100, np.int16), 48000, subtype="PCM_16"),
     "48000 Hz mono 16-bit"),
    ("deep.wav", lambda p: sf.write(p, np.zeros(100, np.int32), 16000, subtype="PCM_24"),
     "16000 Hz mono 24-bit"),
    ("byte.wav", lambda p: sf.write(p, np.zeros(100, np.int16), 16000, subtype="PCM_U8"),
     "16000 Hz mono 8-bit"),
    ("float.wav", lambda p: sf.write(p, np.zeros(100, np.float32), 16000, subtype="FLOAT"),
     "16000 Hz mono 32-bit float"),
])
def test_wrong_format_says_what_and_how_to_convert(mpy, tmp_path, name, make, what):
    path = tmp_path / name
    make(path)
    res = mpy(READ_ALL, path, 0)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert f"ValueError: {path}: {what}; hark needs 16000 Hz mono 16-bit PCM" in out
    assert f"`sox {path} -r 16000 -c 1 -b 16 out.wav`" in out


@pytest.mark.parametrize("name,content,what", [
    ("text.wav", b"hello, this is not audio at all", "not a WAV file (no RIFF/WAVE header)"),
    ("tiny.wav", b"RIF", "not a WAV file"),
    ("cut.wav", riff([(b"fmt ", fmt()), (b"data", bytes(2000))])[:-500],
     "truncated WAV: data chunk says 2000 bytes but only 1500 follow"),
    ("nodata.wav", riff([(b"fmt ", fmt())]), "truncated WAV: no 'data' chunk"),
    ("cutfmt.wav", riff([(b"fmt ", fmt())])[:30], "truncated WAV: 'fmt ' chunk is cut short"),
    ("order.wav", riff([(b"data", bytes(4)), (b"fmt ", fmt())]), "malformed WAV: 'data' before 'fmt '"),
])
def test_damaged_files(mpy, tmp_path, name, content, what):
    path = tmp_path / name
    path.write_bytes(content)
    res = mpy(READ_ALL, path, 0)
    assert res.returncode != 0
    assert f"ValueError: {path}: {what}" in res.stdout + res.stderr


def test_missing_file(mpy, tmp_path):
    res = mpy(READ_ALL, tmp_path / "gone.wav", 0)
    assert "gone.wav: cannot open" in res.stdout + res.stderr


def test_streamed_length_reads_to_end(mpy, tmp_path, pcm):
    data = riff([(b"fmt ", fmt()), (b"data", pcm[:500].tobytes())])
    data = data.replace(b"data" + struct.pack("<I", 1000), b"data" + b"\xff" * 4)
    path = tmp_path / "stream.wav"
    path.write_bytes(data)
    assert mpy(READ_ALL, path, 0).stdout.split()[:2] == ["500", str(checksum(pcm[:500]))]


def test_wav_readinto_allocates_nothing(mpy, tmp_path, pcm):
    path = tmp_path / "clip.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    code = """
import sys, micropython
from array import array
from sources import WavSource
def run():
    src = WavSource(sys.argv[1], 500)
    buf = array("h", bytes(2 * 320))
    src.readinto(buf)
    total = 0
    micropython.heap_lock()
    while True:
        n = src.readinto(buf)
        if not n:
            break
        total += n
    micropython.heap_unlock()
    return total
print(run())
"""
    res = mpy(code, path, heapsize="64K")
    assert res.stdout.split() == [str(len(pcm) + 8000 - 320)], res.stdout + res.stderr


STDIN = """
import sys
from array import array
from sources import StdinSource
class Trickle:
    # stdin that returns at most `step` bytes per read, like a slow pipe
    def __init__(self, step):
        self.step = step
    def readinto(self, buf, n):
        return sys.stdin.buffer.readinto(buf, min(n, self.step))
step = int(sys.argv[1])
src = StdinSource(Trickle(step) if step else None)
buf = array("h", bytes(2 * 64))
total = 0
check = 0
while True:
    n = src.readinto(buf)
    if not n:
        break
    for i in range(n):
        check = (check * 31 + buf[i]) & 0xFFFFFF
    total += n
print(total, check)
"""


@pytest.mark.parametrize("step", [0, 7, 1, 128])
def test_stdin_pcm(mpy, pcm, step):
    res = mpy(STDIN, step, stdin=pcm[:3001].tobytes())
    assert res.stdout.split() == [b"3001", str(checksum(pcm[:3001])).encode()], res.stdout + res.stderr


I2S = """
import struct
from array import array
from mic import I2SSource
class FakeI2S:
    def __init__(self, values):
        self.values = values
    def readinto(self, raw):
        n = min(len(self.values), len(raw) // 4)
        for i in range(n):
            struct.pack_into("<i", raw, 4 * i, self.values[i])
        return 4 * n
values = [0x7FFFFF00, -0x80000000, 0x12345600, -0x12345600, 0x00010000, -1, 0x1FFFC000, 0x00004000]
for mic, i2s in (("inmp441", {"bits": 32}), ("SPH0645", {"bits": 32}),
                 ("inmp441", {"bits": 32, "shift": 16}), ("other", {"bits": 32, "shift": 14})):
    i2s["dc_block"] = False   # the conversion alone
    src = I2SSource({"mic": mic, "i2s": i2s}, 16, FakeI2S(values))
    buf = array("h", bytes(32))
    n = src.readinto(buf)
    print(mic, list(buf[:n]))
"""


def test_i2s_32bit_slots_to_int16(mpy):
    res = mpy(I2S)
    assert res.returncode == 0, res.stdout + res.stderr
    values = [0x7FFFFF00, -0x80000000, 0x12345600, -0x12345600, 0x00010000, -1, 0x1FFFC000, 0x00004000]
    lines = res.stdout.splitlines()
    assert len(lines) == 4
    for line, shift in zip(lines, (12, 12, 16, 14)):
        expect = [int(np.clip(v >> shift, -32768, 32767)) for v in values]
        assert line.split(" ", 1)[1] == str(expect)


DC = """
import math, struct, gc
from array import array
import mic
from mic import I2SSource
class Mic:  # a MEMS mic with a DC offset: 8000 + 3000 sin(2 pi 500 t) after the 12-bit shift
    def __init__(self):
        self.t = 0
    def readinto(self, raw):
        for i in range(len(raw) // 4):
            v = 8000 + int(3000 * math.sin(2 * math.pi * 500 * (self.t + i) / 16000))
            struct.pack_into("<i", raw, 4 * i, v << 12)
        self.t += len(raw) // 4
        return len(raw)
for dc_block in (True, False):
    src = I2SSource({"mic": "inmp441", "i2s": {"bits": 32, "dc_block": dc_block}}, 320, Mic())
    buf = array("h", bytes(640))
    src.readinto(buf)
    first = max(abs(v) for v in buf[:80])
    for _ in range(48):     # ~1 s
        src.readinto(buf)
    src.readinto(buf)
    mean = sum(buf) / len(buf)
    rms = math.sqrt(sum((v - mean) ** 2 for v in buf) / len(buf))
    before = gc.mem_alloc()
    mic._remove_dc(buf, len(buf), src.dc or [0, 0, 0])   # the filter itself allocates nothing
    grew = gc.mem_alloc() - before
    print(dc_block, first, round(mean), round(rms), grew)
"""


def test_i2s_dc_offset_is_removed_without_a_click(mpy):
    res = mpy(DC)
    assert res.returncode == 0, res.stdout + res.stderr
    on, off = (line.split() for line in res.stdout.splitlines())
    assert off[0] == "False" and abs(int(off[2]) - 8000) < 50       # without it the offset stays
    assert on[0] == "True"
    first, mean, rms, grew = map(int, on[1:])
    assert first <= 3300             # primed on the first sample: no step from 0 to 8000
    assert abs(mean) < 60            # offset gone after a second
    assert abs(rms - 3000 / 2 ** 0.5) < 0.03 * 3000 / 2 ** 0.5   # 500 Hz passes unchanged
    assert grew == 0                 # nothing allocated per block
