"""Streaming MFCC front end: int16 pcm in, one int8 row of model input per hop out.

Integer only, no allocation per frame. Every table and constant comes from the blob
(training/frontend_tables.py builds them and models this arithmetic bit for bit in numpy;
its docstring has the pipeline and the 32-bit bounds). Frame t covers samples
[hop t, hop t + n_fft), as the librosa reference with center=False.

viper int is 32-bit on the boards but 64-bit on the unix port, so signed 32-bit loads are
sign-extended with (v ^ 2^31) - 2^31 (a no-op on 32-bit) and signed 16-bit ones with
(v ^ 2^15) - 2^15 (ptr16 loads are unsigned).
"""
import micropython

_NFFT = const(512)
_N = const(256)          # complex FFT size: the 512 real samples as (even, odd) pairs

# int32 state / parameter array (fesetup.frontend fills it: _FFT_LIM on in its _PARAMS order)
_FILL = const(0)         # samples in the frame buffer
_OR = const(1)           # OR of |v| of the data about to enter the next FFT stage
_TOTAL = const(2)        # total block shift of the frame
_SPLIT = const(3)        # block shift before the real-FFT split
_FFT_LIM = const(4)
_SPLIT_LIM = const(5)
_MEL_BITS = const(6)
_FLOOR = const(7)
_TOP = const(8)
_CENTRE = const(9)
_DCT_IN = const(10)
_TB = const(11)
_IB = const(12)
_Q = const(13)
_NMELS = const(14)
_NMFCC = const(15)
_HOP = const(16)


@micropython.viper
def _fill(buf: ptr16, pcm: ptr16, st: ptr32, pos: int, end: int) -> int:
    fill = st[_FILL]
    n = _NFFT - fill
    if n > end - pos:
        n = end - pos
    if n < 0:
        n = 0
    st[_FILL] = fill + n
    # buf and pcm, the first two parameters (registers), step through the samples
    buf = ptr16(int(buf) + 2 * fill)
    pcm = ptr16(int(pcm) + 2 * pos)
    stop = int(pcm) + 2 * n
    while int(pcm) < stop:
        buf[0] = pcm[0]
        buf = ptr16(int(buf) + 2)
        pcm = ptr16(int(pcm) + 2)
    return pos + n


@micropython.viper
def _keep_tail(buf: ptr16, st: ptr32):
    """Move the overlap (n_fft - hop samples) to the front for the next frame (two samples a
    word when the hop is even: the buffer is word-aligned)."""
    hop = st[_HOP]
    stop = int(buf) + 2 * _NFFT
    if hop & 1 == 0:
        d = ptr32(buf)
        s = ptr32(int(buf) + 2 * hop)
        while int(s) < stop:
            d[0] = s[0]
            d = ptr32(int(d) + 4)
            s = ptr32(int(s) + 4)
    else:
        d16 = buf
        s16 = ptr16(int(buf) + 2 * hop)
        while int(s16) < stop:
            d16[0] = s16[0]
            d16 = ptr16(int(d16) + 2)
            s16 = ptr16(int(s16) + 2)
    st[_FILL] = _NFFT - hop


@micropython.viper
def _window(buf: ptr16, win: ptr16, rev: ptr8, z: ptr32, st: ptr32):
    """Window (|v| < 2^31) into digit-reversed complex order; OR of |v| for the first shift.
    win is the symmetric window's first half, w[0..256] (w[i] = w[512 - i]): samples 2n, 2n + 1
    take win[0], win[1] going up to the middle, then win[1], win[0] coming back down."""
    o = 0
    n = 0
    while n < _N:
        if n == _N >> 1:
            win = ptr16(int(win) - 2)   # w[511 - 2n] for n = 128: its pair is w[512 - 2n]
        p = ptr32(int(z) + (rev[n] << 3))
        if n < _N >> 1:
            v = ((buf[0] ^ 0x8000) - 0x8000) * win[0]
            u = ((buf[1] ^ 0x8000) - 0x8000) * win[1]
            win = ptr16(int(win) + 4)
        else:
            v = ((buf[0] ^ 0x8000) - 0x8000) * win[1]
            u = ((buf[1] ^ 0x8000) - 0x8000) * win[0]
            win = ptr16(int(win) - 4)
        p[0] = v
        p[1] = u
        o = (v ^ (v >> 31)) | (u ^ (u >> 31)) | o
        buf = ptr16(int(buf) + 4)
        n += 1
    st[_OR] = o


@micropython.viper
def _fft(z: ptr32, st: ptr32, tw: ptr16):
    """In-place radix-4 DIT FFT of 256 complex values with block floating point; tw is the
    quarter-wave table (blob._twiddles). z and st, the first two parameters (the ones viper keeps
    in registers), step through the first two of each butterfly's four inputs."""
    base = int(z)
    state = int(st)
    one = 1
    sb = one << 31
    lim = st[_FFT_LIM]
    o = st[_OR]
    total = 0
    h = 1
    tstep = _N >> 1                      # twiddle step: W512^(j * 128 / h)
    stop = base + (_N << 3)
    while h < _N:
        # shift so every |component| <= 2^lim (o = OR of v ^ (v >> 31) over the data)
        s = 0
        while (o >> s) >> lim:
            s += 1
        total += s
        o = 0
        span = h << 2
        db = h << 3                      # bytes from one of the four inputs to the next
        step = span << 3
        j = 0
        while j < h:
            if j:
                # W512^n, 2n, 3n from the quarter-wave cosine table q (q[n] = cos, q[128 - n] =
                # sin of W512^n for n <= 128; the other quadrants by symmetry)
                n = j * tstep                   # < 128
                w1r = tw[n]
                w1i = 0 - tw[128 - n]
                n2 = n << 1                     # < 256
                if n2 <= 128:
                    w2r = tw[n2]
                    w2i = 0 - tw[128 - n2]
                else:
                    w2r = 0 - tw[256 - n2]
                    w2i = 0 - tw[n2 - 128]
                n3 = n2 + n                     # < 384
                if n3 <= 128:
                    w3r = tw[n3]
                    w3i = 0 - tw[128 - n3]
                elif n3 <= 256:
                    w3r = 0 - tw[256 - n3]
                    w3i = 0 - tw[n3 - 128]
                else:
                    w3r = 0 - tw[n3 - 256]
                    w3i = tw[384 - n3]
            # the butterflies j, j + span, ...: their four inputs (complex, int32 pairs) through
            # pointers d pairs apart, loaded and stored at constant offsets
            z = ptr32(base + (j << 3))
            while int(z) < stop:
                st = ptr32(int(z) + db)
                q2 = ptr32(int(st) + db)
                q3 = ptr32(int(q2) + db)
                ar = ((z[0] ^ sb) - sb) >> s
                ai = ((z[1] ^ sb) - sb) >> s
                b1r = ((st[0] ^ sb) - sb) >> s
                b1i = ((st[1] ^ sb) - sb) >> s
                b2r = ((q2[0] ^ sb) - sb) >> s
                b2i = ((q2[1] ^ sb) - sb) >> s
                b3r = ((q3[0] ^ sb) - sb) >> s
                b3i = ((q3[1] ^ sb) - sb) >> s
                if j:
                    # (b * w) / 2^15 rounded, b = hi * 2^15 + lo: every product < 2^31
                    hr = b1r >> 15
                    hi = b1i >> 15
                    lr = b1r & 0x7FFF
                    li = b1i & 0x7FFF
                    b1r = hr * w1r - hi * w1i + ((lr * w1r - li * w1i + 0x4000) >> 15)
                    b1i = hr * w1i + hi * w1r + ((lr * w1i + li * w1r + 0x4000) >> 15)
                    hr = b2r >> 15
                    hi = b2i >> 15
                    lr = b2r & 0x7FFF
                    li = b2i & 0x7FFF
                    b2r = hr * w2r - hi * w2i + ((lr * w2r - li * w2i + 0x4000) >> 15)
                    b2i = hr * w2i + hi * w2r + ((lr * w2i + li * w2r + 0x4000) >> 15)
                    hr = b3r >> 15
                    hi = b3i >> 15
                    lr = b3r & 0x7FFF
                    li = b3i & 0x7FFF
                    b3r = hr * w3r - hi * w3i + ((lr * w3r - li * w3i + 0x4000) >> 15)
                    b3i = hr * w3i + hi * w3r + ((lr * w3i + li * w3r + 0x4000) >> 15)
                t0r = ar + b2r
                t0i = ai + b2i
                t1r = ar - b2r
                t1i = ai - b2i
                t2r = b1r + b3r
                t2i = b1i + b3i
                t3r = b1r - b3r
                t3i = b1i - b3i
                v = t0r + t2r
                u = t0i + t2i
                z[0] = v
                z[1] = u
                o = (v ^ (v >> 31)) | (u ^ (u >> 31)) | o
                v = t1r + t3i
                u = t1i - t3r
                st[0] = v
                st[1] = u
                o = (v ^ (v >> 31)) | (u ^ (u >> 31)) | o
                v = t0r - t2r
                u = t0i - t2i
                q2[0] = v
                q2[1] = u
                o = (v ^ (v >> 31)) | (u ^ (u >> 31)) | o
                v = t1r - t3i
                u = t1i + t3r
                q3[0] = v
                q3[1] = u
                o = (v ^ (v >> 31)) | (u ^ (u >> 31)) | o
                z = ptr32(int(z) + step)
            j += 1
        h = span
        tstep >>= 2
    st = ptr32(state)
    lim = st[_SPLIT_LIM]
    s = 0
    while (o >> s) >> lim:
        s += 1
    st[_SPLIT] = s
    st[_TOTAL] = total + s


@micropython.viper
def _split(x: ptr32, st: ptr32, tw: ptr16):
    """257 bins of the real 512-point FFT (times 2) from the 256-point complex one, in place:
    bins k and 256 - k are computed from the two values they overwrite (bin 256 is the 257th).
    Then x and st, the first two parameters (viper keeps those in registers), step through them."""
    z = x       # read as the complex FFT, written (x) as the real one's bins
    one = 1
    sb = one << 31
    s = st[_SPLIT]
    ar = ((z[0] ^ sb) - sb) >> s
    ai = ((z[1] ^ sb) - sb) >> s
    x[0] = (ar + ai) << 1
    x[1] = 0
    x[2 * _N] = (ar - ai) << 1
    x[2 * _N + 1] = 0
    k = 1
    x = ptr32(int(z) + 8)                # bin k, then up
    st = ptr32(int(z) + 8 * (_N - 1))    # bin 256 - k, then down
    while k <= _N >> 1:                  # bins k and 256 - k share their two inputs
        ar = ((x[0] ^ sb) - sb) >> s
        ai = ((x[1] ^ sb) - sb) >> s
        br = ((st[0] ^ sb) - sb) >> s
        bi = ((st[1] ^ sb) - sb) >> s
        wr = tw[k]                       # W512^k
        wi = 0 - tw[(_N >> 1) - k]
        orr = ai + bi
        oi = br - ar
        hr = orr >> 15
        hi = oi >> 15
        lr = orr & 0x7FFF
        li = oi & 0x7FFF
        x[0] = ar + br + hr * wr - hi * wi + ((lr * wr - li * wi + 0x4000) >> 15)
        x[1] = ai - bi + hr * wi + hi * wr + ((lr * wi + li * wr + 0x4000) >> 15)
        if k < _N >> 1:
            wr = 0 - wr                  # W512^(256 - k) = -cos - j sin
            oi = ar - br
            hi = oi >> 15
            li = oi & 0x7FFF
            st[0] = br + ar + hr * wr - hi * wi + ((lr * wr - li * wi + 0x4000) >> 15)
            st[1] = bi - ai + hr * wi + hi * wr + ((lr * wi + li * wr + 0x4000) >> 15)
        x = ptr32(int(x) + 8)
        st = ptr32(int(st) - 8)
        k += 1


@micropython.viper
def _mel_log(x: ptr32, w: ptr16, start: ptr16, length: ptr8, off: ptr32, lt: ptr16,
             lg: ptr32, st: ptr32):
    """Per band: shift to 15-bit amplitudes, weighted power sum, log2, clamp, round for the DCT.
    x and w step through the bins and the weights: viper keeps its first two parameters in
    registers."""
    base = int(x)
    one = 1
    sb = one << 31
    mel_bits = st[_MEL_BITS]
    total = st[_TOTAL]
    floor = (st[_FLOOR] ^ sb) - sb
    top = (st[_TOP] ^ sb) - sb
    centre = (st[_CENTRE] ^ sb) - sb
    ds = st[_DCT_IN]
    tb = st[_TB]
    ib = st[_IB]
    q = st[_Q]
    tmask = (one << tb) - 1
    imask = (one << ib) - 1
    nmels = st[_NMELS]
    b = 0
    while b < nmels:
        k0 = start[b] << 1
        k1 = k0 + (length[b] << 1)
        o = 0
        end = base + (k1 << 2)
        x = ptr32(base + (k0 << 2))
        while int(x) < end:             # a bin (re, im) a pass
            v = (x[0] ^ sb) - sb
            u = (x[1] ^ sb) - sb
            o = (v ^ (v >> 31)) | (u ^ (u >> 31)) | o
            x = ptr32(int(x) + 8)
        s = 0
        while (o >> s) >> mel_bits:      # at most a few steps: o < 2^31
            s += 1
        acc = 0
        x = ptr32(base + (k0 << 2))
        while int(x) < end:
            vr = ((x[0] ^ sb) - sb) >> s
            vi = ((x[1] ^ sb) - sb) >> s
            acc = ((((vr * vr) >> 1) + ((vi * vi) >> 1) + 0x4000) >> 15) * w[0] + acc
            w = ptr16(int(w) + 2)
            x = ptr32(int(x) + 8)
        if acc == 0:
            v = floor
        else:
            nb = 0                       # bit length of acc, by halving
            v = acc
            if v >> 16:
                v >>= 16
                nb = 16
            if v >> 8:
                v >>= 8
                nb += 8
            if v >> 4:
                v >>= 4
                nb += 4
            if v >> 2:
                v >>= 2
                nb += 2
            if v >> 1:
                nb += 1
            nb += 1
            f = acc << (31 - nb)
            i = (f >> (30 - tb)) & tmask
            t0 = lt[i]
            v = ((nb - 1) << q) + t0 + (((lt[i + 1] - t0) * ((f >> (30 - tb - ib)) & imask)) >> ib)
            v += ((total + s) << (q + 1)) + ((off[b] ^ sb) - sb)
            if v < floor:
                v = floor
            if v > top:
                v = top
        lg[b] = (v - centre + (one << (ds - 1))) >> ds
        b += 1


@micropython.viper
def _dct(m: ptr16, lg: ptr32, bias: ptr32, shift: ptr8, out: ptr8, st: ptr32):
    """DCT, normalisation and input quantisation as one integer matrix (int16); clamp to int8.
    m and lg, the first two parameters (viper keeps those in registers), step through a row of
    the matrix and the bands."""
    one = 1
    sb = one << 31
    nmels = st[_NMELS]
    nmfcc = st[_NMFCC]
    base = int(lg)
    end = base + 4 * nmels
    j = 0
    while j < nmfcc:
        acc = (bias[j] ^ sb) - sb
        lg = ptr32(base)
        while int(lg) < end:
            acc = ((m[0] ^ 0x8000) - 0x8000) * ((lg[0] ^ sb) - sb) + acc
            m = ptr16(int(m) + 2)
            lg = ptr32(int(lg) + 4)
        acc >>= shift[j]
        if acc < -128:
            acc = -128
        if acc > 127:
            acc = 127
        out[j] = acc & 0xFF
        j += 1


class FrontEnd:
    """push() pcm until ready; then frame holds the int8 features of one hop."""

    VERSION = 2         # the blob's frontend version (and n_fft) this arithmetic implements
    N_FFT = _NFFT

    def __init__(self, meta, arrays, bufs=None):
        """arrays: as blob.load gives them (the window's first half, the twiddles as a quarter-wave
        cosine table, the DCT matrix as int16). bufs: the two buffers below, made by the caller
        while its heap still has room for them in one piece (startup.build), or None."""
        # int16/int32 buffers only viper code reads: zeroed bytearrays need no temporary copy
        # (array(t, bytes(n)) briefly holds both, 2 KB more at the start-up peak). The frame's
        # samples, and the complex FFT, then (in place: bins k and 256 - k replace the values they
        # are made of, _split) the 257 bins of the real one
        self._buf, self._z = bufs or (bytearray(2 * _NFFT), bytearray(8 * (_N + 1)))
        if len(self._buf) != 2 * _NFFT or len(self._z) != 8 * (_N + 1):
            raise ValueError("front-end buffers of %d and %d bytes; it needs %d and %d"
                             % (len(self._buf), len(self._z), 2 * _NFFT, 8 * (_N + 1)))
        import fesetup
        n_mels, n_mfcc = fesetup.frontend(self, meta, arrays)  # checks; tables, parameters
        del fesetup
        self._lg = bytearray(4 * n_mels)
        self.frame = bytearray(n_mfcc)
        self.ready = False

    def reset(self):
        """Forget buffered samples: the next frame needs n_fft new ones."""
        self._st[_FILL] = 0
        self.ready = False

    def push(self, pcm, pos, end):
        """Consume int16 pcm[pos:end] up to the next frame; returns the new pos, sets ready.

        pcm is an array('h') or a memoryview of one (viper reads it unchecked, hence the
        bounds check here).
        """
        if pos < 0 or end > len(pcm):
            raise ValueError("push(pcm, pos, end): need 0 <= pos and end <= len(pcm)")
        st = self._st
        pos = _fill(self._buf, pcm, st, pos, end)
        if st[_FILL] < _NFFT:
            self.ready = False
            return pos
        win, rev, tw, start, length, w, off, lt, m, bias, shift = self._t
        z = self._z
        lg = self._lg
        _window(self._buf, win, rev, z, st)
        _fft(z, st, tw)
        _split(z, st, tw)
        _mel_log(z, w, start, length, off, lt, lg, st)
        _dct(m, lg, bias, shift, self.frame, st)
        _keep_tail(self._buf, st)
        self.ready = True
        return pos
