# hark int8 inference engine: runs the graph from a model blob bit-exactly like TFLite Micro.
#
# Conventions (the host side is training/graph.py):
# - the arena holds activations as uint8 u = q + 128, so products need no sign extension;
#   weights are uint8 w' = w + 128 and the folded bias restores sum((q - zp) * w) + bias.
# - all arithmetic is integer and every intermediate stays below 2**31 in magnitude, so the
#   viper code gives the same answers with the 32-bit ints of a board as with the 64-bit
#   ints of the unix port. TFLite Micro's 64-bit SaturatingRoundingDoublingHighMul is
#   rebuilt from 16-bit limbs, its rounding shift folded in (requantisation, _dwconv) or from
#   16/8-bit limbs (softmax); tests/test_engine.py mirrors both with 31-bit checks.
# - signed int32 values in blob arrays are read as (v ^ 2**31) - 2**31 (ptr32 loads are
#   zero-extended on 64-bit ports; a no-op on 32-bit ones), int8 shifts as (v ^ 0x80) - 0x80;
#   constants >= 2**30 are built at run time because they are not small ints on 32-bit ports.
# - per-op config arrays hold only non-negative ints (shifts are stored + 32) for the same reason.
# - invoke() allocates nothing: every op is a preplanned call with preallocated arguments
#   (the exporter plans them, training/plan.py; firmware/plan.py points them at the arrays).
# - the requantisation block is written out inside each kernel's output loop on purpose:
#   a viper function call per output value would cost more than the multiply-accumulates
#   (MicroPython does not inline). tests/test_engine.py holds every kernel to TFLite Micro.
import micropython


@micropython.viper
def _copy_in(arena: ptr8, src: ptr8, cfg: ptr32, a: ptr8, b: ptr8, c: ptr8):
    # int8 bytes -> offset form (q + 128 == byte ^ 0x80)
    dst = ptr8(int(arena) + cfg[0])
    n = cfg[1]
    i = 0
    while i < n:
        dst[i] = src[i] ^ 0x80
        i += 1


@micropython.viper
def _copy_out(arena: ptr8, dst: ptr8, cfg: ptr32, a: ptr8, b: ptr8, c: ptr8):
    src = ptr8(int(arena) + cfg[0])
    n = cfg[1]
    i = 0
    while i < n:
        dst[i] = src[i] ^ 0x80
        i += 1


@micropython.viper
def _conv(arena: ptr8, filt: ptr8, cfg: ptr32, bias: ptr32, mult: ptr32, shift: ptr8):
    # CONV_2D and FULLY_CONNECTED: per position, one contiguous patch of K bytes (direct from
    # the input or gathered into scratch with zero-point padding), then Cout dot products.
    in_off = cfg[0]
    base = int(arena)     # `arena` and `filt` step through the input and weights below
    wb = int(filt)
    out = ptr8(base + cfg[1])
    scratch = cfg[2]
    H = cfg[3]
    W = cfg[4]
    cin = cfg[5]
    OH = cfg[6]
    OW = cfg[7]
    cout = cfg[8]
    kh = cfg[9]
    kw = cfg[10]
    sh = cfg[11]
    sw = cfg[12]
    pt = cfg[13]
    pl = cfg[14]
    zin = cfg[15]
    zout = cfg[16]
    lo = cfg[17]
    hi = cfg[18]
    direct = cfg[19]
    K = cfg[20]
    one = 1
    sb = one << 31
    K4 = K & ~3
    rowlen = kw * cin
    o = 0
    for oy in range(OH):
        for ox in range(OW):
            if direct:
                p = ptr8(base + in_off + (oy * sh * W + ox * sw) * cin)
            else:
                p = ptr8(base + scratch)
                q = 0
                for ky in range(kh):
                    iy = oy * sh - pt + ky
                    ix = ox * sw - pl
                    if iy < 0 or iy >= H:
                        for j in range(rowlen):
                            p[q + j] = zin
                        q += rowlen
                        continue
                    src = ptr8(base + in_off + (iy * W) * cin)
                    for kx in range(kw):
                        if ix < 0 or ix >= W:
                            for j in range(cin):
                                p[q + j] = zin
                        else:
                            s0 = ix * cin
                            for j in range(cin):
                                p[q + j] = src[s0 + j]
                        q += cin
                        ix += 1
            su = 0
            for j in range(K):
                su = p[j] + su
            su = su << 7
            # four output channels per pass share each input byte load
            w0 = ptr8(wb)
            cb = 0
            while cb < cout:
                nb = cout - cb
                if nb > 4:
                    nb = 4
                w1 = w0
                w2 = w0
                w3 = w0
                if nb > 1:
                    w1 = ptr8(int(w0) + K)
                if nb > 2:
                    w2 = ptr8(int(w0) + 2 * K)
                if nb > 3:
                    w3 = ptr8(int(w0) + 3 * K)
                a0 = 0
                a1 = 0
                a2 = 0
                a3 = 0
                # pointers that step 4 bytes a pass: loads at constant offsets are the cheapest
                # viper has (~13 instructions per MAC on armv7emsp against ~20 indexed)
                # the input and first channel's weight pointers are `arena` and `filt`: viper
                # keeps only its first two parameters in registers
                arena = p
                filt = w0
                e1 = w1
                e2 = w2
                e3 = w3
                stop = int(p) + K4
                while int(arena) < stop:
                    x = arena[0]
                    y = arena[1]
                    z = arena[2]
                    v = arena[3]
                    a0 = x * filt[0] + y * filt[1] + z * filt[2] + v * filt[3] + a0
                    a1 = x * e1[0] + y * e1[1] + z * e1[2] + v * e1[3] + a1
                    a2 = x * e2[0] + y * e2[1] + z * e2[2] + v * e2[3] + a2
                    a3 = x * e3[0] + y * e3[1] + z * e3[2] + v * e3[3] + a3
                    arena = ptr8(int(arena) + 4)
                    filt = ptr8(int(filt) + 4)
                    e1 = ptr8(int(e1) + 4)
                    e2 = ptr8(int(e2) + 4)
                    e3 = ptr8(int(e3) + 4)
                i = K4
                while i < K:
                    x = p[i]
                    a0 = x * w0[i] + a0
                    a1 = x * w1[i] + a1
                    a2 = x * w2[i] + a2
                    a3 = x * w3[i] + a3
                    i += 1
                w0 = ptr8(int(w0) + nb * K)
                for c in range(cb, cb + nb):
                    b = bias[c]
                    acc = a0 - su + ((b ^ sb) - sb)
                    a0 = a1         # the next channel's sum moves up
                    a1 = a2
                    a2 = a3
                    # --- MultiplyByQuantizedMultiplier(acc, mult[c], shift[c]): see _dwconv ---
                    m = mult[c]
                    s = shift[c]                # int8 as a byte: < 128 is a left shift
                    if s < 128:
                        acc = acc << s
                    xl = ((acc & 0xFFFF) ^ 0x8000) - 0x8000
                    xh = (acc >> 16) - (xl >> 16)
                    m0 = m & 0xFFFF
                    m = m >> 16
                    a = xh * m0
                    r = (a >> 15) + ((((xl * m0) >> 16) + xl * m + (a & 0x7FFF) + 0x4000) >> 15)
                    if s < 128:
                        r = ((xh * m) << 1) + r
                    else:
                        s = 255 - s             # e - 1 for the right shift e = -shift
                        r = (xh * m + ((r + (1 << s) + (acc >> 31)) >> 1)) >> s
                    r += zout
                    if r < lo:
                        r = lo
                    if r > hi:
                        r = hi
                    out[o] = r
                    o += 1
                cb += nb


@micropython.viper
def _dwconv(arena: ptr8, filt: ptr8, cfg: ptr32, bias: ptr32, mult: ptr32, shift: ptr8):
    # DEPTHWISE_CONV_2D, depth multiplier 1, any kernel/stride, SAME or VALID padding.
    src = ptr8(int(arena) + cfg[0])
    out = ptr8(int(arena) + cfg[1])
    H = cfg[3]
    W = cfg[4]
    C = cfg[5]
    OH = cfg[6]
    OW = cfg[7]
    kh = cfg[9]
    kw = cfg[10]
    sh = cfg[11]
    sw = cfg[12]
    pt = cfg[13]
    pl = cfg[14]
    zin = cfg[15]
    zout = cfg[16]
    lo = cfg[17]
    hi = cfg[18]
    one = 1
    sb = one << 31
    K = kh * kw
    WC = W * C
    wb = int(filt)
    o = 0
    for oy in range(OH):
        y0 = oy * sh - pt
        for ox in range(OW):
            x0 = ox * sw - pl
            inside = y0 >= 0 and y0 + kh <= H and x0 >= 0 and x0 + kw <= W
            # four channels per pass: one tap loop feeds four accumulators; taps outside
            # the image read the input zero point, as TFLite's zero padding means
            cb = 0
            while cb < C:
                nb = C - cb
                if nb > 4:
                    nb = 4
                d1 = 0
                d2 = 0
                d3 = 0
                if nb > 1:
                    d1 = 1
                if nb > 2:
                    d2 = 2
                if nb > 3:
                    d3 = 3
                filt = ptr8(wb + cb * K)        # the group's first channel (a register)
                w1 = ptr8(int(filt) + d1 * K)
                w2 = ptr8(int(filt) + d2 * K)
                w3 = ptr8(int(filt) + d3 * K)
                a0 = 0
                a1 = 0
                a2 = 0
                a3 = 0
                t = 0
                rp = ptr8(int(src) + (y0 * W + x0) * C + cb)    # tap (0, 0), maybe outside
                for ky in range(kh):
                    iy = y0 + ky
                    row_in = inside or (iy >= 0 and iy < H)
                    arena = rp                  # the tap pointer (a register: see _conv)
                    for kx in range(kw):
                        ix = x0 + kx
                        if inside or (row_in and ix >= 0 and ix < W):
                            v0 = arena[0]
                            v1 = arena[d1]
                            v2 = arena[d2]
                            v3 = arena[d3]
                        else:
                            v0 = zin
                            v1 = zin
                            v2 = zin
                            v3 = zin
                        # u * (w' - 128) = u * w: sum(u * w') - 128 * sum(u) in one step
                        a0 = v0 * (filt[t] - 128) + a0
                        a1 = v1 * (w1[t] - 128) + a1
                        a2 = v2 * (w2[t] - 128) + a2
                        a3 = v3 * (w3[t] - 128) + a3
                        t += 1
                        arena = ptr8(int(arena) + C)
                    rp = ptr8(int(rp) + WC)
                for c in range(cb, cb + nb):
                    b = bias[c]
                    acc = a0 + ((b ^ sb) - sb)
                    a0 = a1         # the next channel's sum moves up
                    a1 = a2
                    a2 = a3
                    # --- MultiplyByQuantizedMultiplier(acc, m, s) in 32-bit ints, TFLM's double
                    # rounding included: with acc = xh * 2^16 + xl (xl signed 16-bit) and
                    # m = m1 * 2^16 + m0, SaturatingRoundingDoublingHighMul(acc, m) =
                    # floor((acc * m + 2^30) / 2^31) = 2 * xh * m1 + r, r = floor((xh * m0 + xl * m1
                    # + floor(xl * m0 / 2^16) + 2^14) / 2^15); RoundingDivideByPOT(y, e) =
                    # floor((y + 2^(e-1) - (acc < 0)) / 2^e). Every partial result stays below
                    # 2^31 (tests/test_engine.py mirrors this with the bounds checked) ---
                    m = mult[c]
                    s = shift[c]                # int8 as a byte: < 128 is a left shift
                    if s < 128:
                        acc = acc << s
                    xl = ((acc & 0xFFFF) ^ 0x8000) - 0x8000
                    xh = (acc >> 16) - (xl >> 16)
                    m0 = m & 0xFFFF
                    m = m >> 16
                    a = xh * m0
                    r = (a >> 15) + ((((xl * m0) >> 16) + xl * m + (a & 0x7FFF) + 0x4000) >> 15)
                    if s < 128:
                        r = ((xh * m) << 1) + r
                    else:
                        s = 255 - s             # e - 1 for the right shift e = -shift
                        r = (xh * m + ((r + (1 << s) + (acc >> 31)) >> 1)) >> s
                    r += zout
                    if r < lo:
                        r = lo
                    if r > hi:
                        r = hi
                    out[o] = r
                    o += 1
                cb += nb


@micropython.viper
def _pool(arena: ptr8, a: ptr8, cfg: ptr32, b: ptr8, c_: ptr8, d: ptr8):
    # AVERAGE_POOL_2D (TFLM rounding division over the in-image taps) and MAX_POOL_2D.
    src = ptr8(int(arena) + cfg[0])
    out = ptr8(int(arena) + cfg[1])
    H = cfg[3]
    W = cfg[4]
    C = cfg[5]
    OH = cfg[6]
    OW = cfg[7]
    kh = cfg[9]
    kw = cfg[10]
    sh = cfg[11]
    sw = cfg[12]
    pt = cfg[13]
    pl = cfg[14]
    lo = cfg[17]
    hi = cfg[18]
    is_max = cfg[19]
    o = 0
    for oy in range(OH):
        y0 = oy * sh - pt
        ya = 0 if y0 >= 0 else 0 - y0
        yb = kh if y0 + kh <= H else H - y0
        for ox in range(OW):
            x0 = ox * sw - pl
            xa = 0 if x0 >= 0 else 0 - x0
            xb = kw if x0 + kw <= W else W - x0
            n = (yb - ya) * (xb - xa)
            for c in range(C):
                acc = 0
                for ky in range(ya, yb):
                    # the tap pointer is `arena`, a register (see _conv)
                    arena = ptr8(int(src) + ((y0 + ky) * W + x0 + xa) * C + c)
                    for kx in range(xa, xb):
                        v = arena[0]
                        if is_max:
                            if v > acc:
                                acc = v
                        else:
                            acc = v + acc
                        arena = ptr8(int(arena) + C)
                if not is_max:
                    acc -= n << 7
                    if acc > 0:
                        acc = (acc + (n >> 1)) // n
                    else:
                        acc = 0 - ((0 - acc + (n >> 1)) // n)
                    acc += 128
                if acc < lo:
                    acc = lo
                if acc > hi:
                    acc = hi
                out[o] = acc
                o += 1


@micropython.viper
def _softmax(arena: ptr8, exp: ptr32, cfg: ptr32, a: ptr8, b: ptr8, d: ptr8):
    # TFLM int8 SOFTMAX: exp(diff) in Q0.31 comes from the host table; the sum, its
    # reciprocal (gemmlowp Newton-Raphson) and the output scaling run here in int32.
    src = ptr8(int(arena) + cfg[0])
    out = ptr8(int(arena) + cfg[1])
    rows = cfg[2]
    depth = cfg[3]
    c48_17 = cfg[4]                 # 1515870810, not a small int on 32-bit ports
    one = 1
    h30 = one << 30
    imax = h30 - 1 + h30
    imin = 0 - imax - 1
    base = 0
    for row in range(rows):
        mx = 0
        for j in range(depth):
            if src[base + j] > mx:
                mx = src[base + j]
        total = 0
        for j in range(depth):
            e = exp[mx - src[base + j]]
            r = e >> 12
            if (e & 0xFFF) > 0x7FF:
                r += 1
            total += r
        # GetReciprocal(total, 12): headroom, then 1 / (1 + x) for x in [0, 1)
        t = total
        clz = 1
        while t < h30:
            t = t << 1
            clz += 1
        nbits = 12 - clz
        hd = t      # RoundingHalfSum(shifted_sum_minus_one, 1.0) == t
        x = 0
        om = 0
        for k in range(7):
            # one signed SaturatingRoundingDoublingHighMul per step
            if k == 0:
                sa = hd
                sb = 0 - 1010580540
            elif k & 1:
                sa = hd
                sb = x
            else:
                sa = x
                sb = om
            neg = 0
            if sa < 0:
                sa = 0 - sa
                neg = 1
            if sb < 0:
                sb = 0 - sb
                neg ^= 1
            u1 = sa >> 16
            u0 = sa & 0xFFFF
            m1 = sb >> 16
            m0 = sb & 0xFFFF
            q = (u0 & 0xFF) * m0 + h30 - neg
            q = (u0 >> 8) * m0 + (q >> 8)
            q = q >> 8
            s1 = u1 * m0
            s2 = u0 * m1
            r = (((u1 * m1) << 1) + (s1 >> 15) + (s2 >> 15) + (q >> 15)
                 + (((s1 & 0x7FFF) + (s2 & 0x7FFF) + (q & 0x7FFF)) >> 15))
            if neg:
                r = 0 - r
            if k == 0:
                x = c48_17 + r
            elif k & 1:
                om = 0x20000000 - r
            else:
                th = 0x1FFFFFFF
                if r > th:
                    r = imax
                elif r < 0 - th:
                    r = imin
                else:
                    r = r << 2
                x = x + r
        if x > h30 - 1:
            scale = imax
        elif x < 1 - h30:
            scale = imin
        else:
            scale = x << 1
        ex = nbits + 23
        mask = (((one << (ex - 1)) - 1) << 1) + 1
        th = mask >> 1
        m1 = scale >> 16
        m0 = scale & 0xFFFF
        for j in range(depth):
            e = exp[mx - src[base + j]]
            u1 = e >> 16
            u0 = e & 0xFFFF
            q = (u0 & 0xFF) * m0 + h30
            q = (u0 >> 8) * m0 + (q >> 8)
            q = q >> 8
            s1 = u1 * m0
            s2 = u0 * m1
            r = (((u1 * m1) << 1) + (s1 >> 15) + (s2 >> 15) + (q >> 15)
                 + (((s1 & 0x7FFF) + (s2 & 0x7FFF) + (q & 0x7FFF)) >> 15))
            rem = r & mask
            r = r >> ex
            if rem > th:
                r += 1
            if r > 255:
                r = 255
            out[base + j] = r
        base += depth


class Interpreter:
    """Runs a blob's int8 graph: fill .input (int8 bytes), invoke(), read .output (int8 bytes).
    plan.py sets it up (.arena, .input, .output, .labels, .macs, .output_scale/_zero_point)."""

    def __init__(self, blob):
        import plan
        plan.windowed(self, blob)

    def invoke(self):
        """Run the graph on .input; results in .output. Allocates nothing."""
        arena = self.arena
        for kernel, cfg, a, b, c, d, _ in self._plan:
            kernel(arena, a, cfg, b, c, d)
