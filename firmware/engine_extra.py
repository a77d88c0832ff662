# hark int8 kernels that only some models use: MEAN and ADD (the dscnn family).
# plan.py imports this module only when a plan calls one of them, so the tcn and tiny_conv models
# do not carry their machine code (~2 KB of heap on stm32/rp2) while audio runs. Same conventions
# as engine.py (its header says why the arithmetic looks like this).
import micropython


@micropython.viper
def _mean(arena: ptr8, a: ptr8, cfg: ptr32, b: ptr8, c_: ptr8, d: ptr8):
    # MEAN over all positions (TFLite QuantizedMeanOrSum): 1/count folded into the multiplier.
    src = ptr8(int(arena) + cfg[0])
    out = ptr8(int(arena) + cfg[1])
    n = cfg[2]
    C = cfg[3]
    zin = n * cfg[4]
    zout = cfg[5]
    for c in range(C):
        s = 0
        p = c
        for i in range(n):
            s += src[p]
            p += C
        r = int(_mbqm(s - zin, cfg[6], cfg[7], cfg[8] - 32)) + zout
        if r < 0:
            r = 0
        if r > 255:
            r = 255
        out[c] = r


@micropython.viper
def _mbqm(x: int, m1: int, m0: int, shift: int) -> int:
    # MultiplyByQuantizedMultiplier for |x << shift| < 2**30, multiplier given as
    # m1 = m >> 16, m0 = m & 0xFFFF: every argument and result is a small int (no allocation)
    one = 1
    rs = 0
    if shift > 0:
        x = x << shift
    else:
        rs = 0 - shift
    neg = 0
    if x < 0:
        x = 0 - x
        neg = 1
    u1 = x >> 16
    u0 = x & 0xFFFF
    t = (u0 & 0xFF) * m0 + (one << 30) - neg
    t = (u0 >> 8) * m0 + (t >> 8)
    t = t >> 8
    s1 = u1 * m0
    s2 = u0 * m1
    r = (((u1 * m1) << 1) + (s1 >> 15) + (s2 >> 15) + (t >> 15)
         + (((s1 & 0x7FFF) + (s2 & 0x7FFF) + (t & 0x7FFF)) >> 15))
    if neg:
        r = 0 - r
    if rs > 0:
        mask = (((one << (rs - 1)) - 1) << 1) + 1    # 2**rs - 1 without overflow
        th = mask >> 1
        if r < 0:
            th += 1
        rem = r & mask
        r = r >> rs
        if rem > th:
            r += 1
    return r


@micropython.viper
def _add(arena: ptr8, a: ptr8, cfg: ptr32, b: ptr8, c: ptr8, d: ptr8):
    # ADD of equal shapes, TFLM int8 scheme: left shift 20, rescale both, sum, rescale.
    x1 = ptr8(int(arena) + cfg[0])
    x2 = ptr8(int(arena) + cfg[1])
    out = ptr8(int(arena) + cfg[2])
    n = cfg[3]
    z1 = cfg[4]
    z2 = cfg[5]
    zo = cfg[6]
    lo = cfg[7]
    hi = cfg[8]
    ls = cfg[18]
    for i in range(n):
        v1 = int(_mbqm((x1[i] - z1) << ls, cfg[9], cfg[10], cfg[11] - 32))
        v2 = int(_mbqm((x2[i] - z2) << ls, cfg[12], cfg[13], cfg[14] - 32))
        r = int(_mbqm(v1 + v2, cfg[15], cfg[16], cfg[17] - 32)) + zo
        if r < lo:
            r = lo
        if r > hi:
            r = hi
        out[i] = r
