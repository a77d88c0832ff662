# Runs on the board, sent by `hark record` through the raw REPL after a prelude that defines
# _audio (the profile's "audio"), _n (samples wanted) and _tmp (a scratch file name).
# It reads the audio exactly as the detector does (firmware/mic.py), stores it in _tmp (a UART
# at 115200 baud is slower than the microphone), then prints it as base64 lines and "END <samples>".
import os
import sys
from array import array
from binascii import b2a_base64


def _record(audio, n, tmp):
    if audio["source"] == "i2s":
        import mic
        src = mic.I2SSource(audio, 320)
        skip = 1600  # the first 100 ms: MEMS microphones settle after power-up
    else:
        import sources
        src = sources.WavSource(audio["path"])
        skip = 0
    buf = array("h", bytes(640))
    mv = memoryview(buf)
    got = 0
    with open(tmp, "wb") as out:
        while got < n:
            k = src.readinto(buf)
            if not k:
                break
            if skip:
                skip = max(0, skip - k)
                continue
            k = min(k, n - got)
            out.write(mv[:k])
            got += k
    src.close()
    return got


def _send(tmp):
    chunk = bytearray(576)  # a multiple of 3: no base64 padding inside the stream
    mv = memoryview(chunk)
    with open(tmp, "rb") as f:
        while True:
            k = f.readinto(chunk)
            if not k:
                break
            sys.stdout.write(b2a_base64(mv[:k]).decode())


try:
    _got = _record(_audio, _n, _tmp)
    _send(_tmp)
finally:
    try:
        os.remove(_tmp)
    except OSError:
        pass
print("END", _got)
