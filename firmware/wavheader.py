"""A WAV file's header, checked once when sources.WavSource opens it (the host's and QEMU's
audio; a board never loads this). samples() removes this module from sys.modules when done, so
its code leaves the heap once the source is open.
"""
import struct
import sys

_NEED = "hark needs 16000 Hz mono 16-bit PCM"
_EXTENSIBLE = 0xFFFE
_FORMATS = {1: "PCM", 3: "float", 6: "A-law", 7: "mu-law", _EXTENSIBLE: "extensible"}


def _fail(path, what):
    raise ValueError("%s: %s; %s: convert with `sox %s -r 16000 -c 1 -b 16 out.wav`"
                     % (path, what, _NEED, path))


def samples(f, path):
    """The number of samples in WAV file f (positioned at its samples): a clear error for anything
    but 16 kHz mono 16-bit PCM, a damaged header or a missing data chunk."""
    size = f.seek(0, 2)
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
        _fail(path, "not a WAV file (no RIFF/WAVE header)")
    pos = 12
    fmt = None
    while True:
        hdr = f.read(8)
        if len(hdr) < 8:
            if fmt is None:
                raise ValueError("%s: truncated WAV: no 'fmt ' chunk; the file is damaged, "
                                 "re-export or re-record it" % path)
            raise ValueError("%s: truncated WAV: no 'data' chunk; the file is damaged, "
                             "re-export or re-record it" % path)
        cid = hdr[0:4]
        clen = struct.unpack("<I", hdr[4:8])[0]
        pos += 8
        if cid == b"fmt ":
            if clen < 16 or pos + clen > size:
                raise ValueError("%s: truncated WAV: 'fmt ' chunk is cut short; re-export "
                                 "or re-record it" % path)
            fmt = f.read(clen)
            _check_format(path, fmt)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("%s: malformed WAV: 'data' before 'fmt '; re-export it "
                                 "(e.g. with sox)" % path)
            avail = size - pos
            if clen == 0xFFFFFFFF:  # streamed writer that never patched the length
                clen = avail
            elif clen > avail:
                raise ValueError("%s: truncated WAV: data chunk says %d bytes but only %d "
                                 "follow; re-export or re-record it" % (path, clen, avail))
            if clen == 0 and avail >= 2:  # a recorder that stopped before it wrote the length
                raise ValueError("%s: the data chunk's length is 0 but %d bytes follow (a "
                                 "recording that was never finished?); repair it with "
                                 "`sox --ignore-length %s fixed.wav`" % (path, avail, path))
            sys.modules.pop(__name__, None)     # header code: not needed while audio flows
            return clen // 2
        else:
            f.seek(pos + clen + (clen & 1))
        pos += clen + (clen & 1)


def _check_format(path, fmt):
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[0:16])
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag == 1 and channels == 1 and rate == 16000 and bits == 16:
        return
    kind = "" if tag == 1 else " " + _FORMATS.get(tag, "format %d" % tag)
    chans = {1: "mono", 2: "stereo"}.get(channels, "%d channels" % channels)
    _fail(path, "%d Hz %s %d-bit%s" % (rate, chans, bits, kind))

