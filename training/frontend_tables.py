"""Integer tables of the device front end, and a numpy model of its exact arithmetic.

The exporter calls `build()` and puts the result in the blob (`meta["frontend"]`, arrays
"fe.*"), so the device never re-derives a table. `device_features_numpy()` does the same
integer arithmetic as firmware/frontend.py, bit for bit, vectorised over frames: the host
uses it to score a model on device features without running MicroPython.

Pipeline (every value fits a signed 32-bit int on the device; bounds in the comments):
  pcm int16 x window (uint16, 1.0 = 65536, peak clipped to 65535)  |v| < 2^31
  -> 256-point complex FFT of (even, odd) sample pairs, radix-4 DIT, digit-reversed input,
     ~30-bit block floating point: before every stage the data is shifted right so that
     |component| <= 2^FFT_LIM (the shift adds to one frame exponent); twiddles are Q15
     (1.0 = 32768) and each product is split b = hi * 2^15 + lo so it stays < 2^31
  -> real-FFT split to 257 bins (input <= 2^SPLIT_LIM, output < 2^30.3)
  -> mel: per band, the bins' components are shifted so the band's largest is <= 2^15,
     power P = re^2/2 + im^2/2 <= 2^30; (P + 2^14) >> 15 <= 2^15 times weights that sum to
     < 2^16: < 2^31. So a band keeps 15 bits of its own amplitude however far below the
     frame's peak it is (the reference floor is ~90 dB below loud speech within one frame).
  -> log2 in Q15 by leading-bit count + 129-entry table with linear interpolation, plus
     the frame/band exponents and a per-band constant: absolute log2 mel power, clamped
     to [log2(log_floor), log2(max possible mel power)]
  -> rounded to Q(LOG_Q - DCT_IN_SHIFT) around a centre; one integer matrix does DCT,
     normalisation and input quantisation, with a per-row bias and right shift chosen so
     sum |a| * max |log| + |bias| < 2^31; clamp to int8.

Arrays: fe.window u16[512] (w[i] = w[512 - i]); fe.perm u8[256] (digit reversal);
fe.twiddle i16[768] (W512^k, k < 384, as (cos, -sin)); fe.mel_start u16, fe.mel_len u8,
fe.mel_off i32 (log2 constant, Q15) per band and fe.mel_w u16 (all bands' weights,
concatenated); fe.log2 u16[129] (log2(1 + i/128), Q15); fe.dct i32[n_mfcc * n_mels] (values
fit int16), fe.dct_bias i32[n_mfcc], fe.dct_shift u8[n_mfcc]. The device loader keeps the
window's first half, the twiddles' quarter wave (cos
over n <= 128) and the DCT as int16 (firmware/blob.py). meta holds the sizes, bounds
and shifts named in this docstring.
"""
import math

import numpy as np

from .features import FeatureSpec, Normalisation, reference_tables

FRONTEND_VERSION = 2   # 1: radix-2 tables of an early draft
FFT_LIM = 28          # radix-4 input bound: outputs <= 2^28 (1 + 3 sqrt2) < 2^31
SPLIT_LIM = 28        # split input bound: outputs <= 2^28 (2 + 2 sqrt2) < 2^31
MEL_BITS = 15         # band amplitude bits: |re|, |im| <= 2^15
MEL_WSUM = 65280      # target weight sum per band: rounding (<= 0.5 per bin) stays < 2^16
LOG_Q = 15            # log2 fraction bits
LOG_TABLE_BITS = 7    # table index bits after the leading one
LOG_INTERP_BITS = 8   # interpolation bits below the index
DCT_IN_SHIFT = 6      # Q15 log2 -> Q9 before the DCT (finer costs DCT coefficient bits)
INT32_LIMIT = 2 ** 31 - 1


def _digit_reverse(n_digits: int) -> np.ndarray:
    """Base-4 digit reversal: input order of a radix-4 decimation-in-time FFT."""
    out = np.zeros(4 ** n_digits, np.int64)
    for i in range(4 ** n_digits):
        v, r = i, 0
        for _ in range(n_digits):
            r, v = r * 4 + v % 4, v // 4
        out[i] = r
    return out


def build(spec: FeatureSpec, norm: Normalisation, input_scale: float, input_zero_point: int):
    """Quantise the reference front end: (meta dict of ints, {"fe.*": array}) for the blob."""
    if spec.n_fft != 512:
        raise ValueError(f"device front end is a 512-point FFT, spec has n_fft={spec.n_fft}")
    ref = reference_tables(spec)
    n_fft, n_half = spec.n_fft, spec.n_fft // 2

    # Q16: Q15 window rounding alone puts up to 0.17 dB on bands near the floor in loud frames
    window = np.minimum(np.round(ref["window"] * 65536), 65535).astype(np.int64)
    assert window.min() >= 0
    k = np.arange(3 * n_half // 2)                 # radix-4 stages need W^(3j) up to k = 383
    twiddle = np.empty(2 * len(k), np.int64)       # W512^k = c + j s, Q15
    twiddle[0::2] = np.round(np.cos(2 * np.pi * k / n_fft) * 32768)
    twiddle[1::2] = np.round(-np.sin(2 * np.pi * k / n_fft) * 32768)
    twiddle[0] = 32767     # W^0 = 1 is never multiplied (exact butterfly); keeps int16
    assert np.abs(twiddle[2:]).max() <= 32768 and twiddle[2:].max() < 32768

    mel = ref["mel"]
    starts, lens, weights, offsets = [], [], [], []
    for band in mel:
        nz = np.nonzero(band > 0)[0]
        lo, hi = int(nz[0]), int(nz[-1]) + 1
        gain = MEL_WSUM / band[lo:hi].sum()
        w = np.round(band[lo:hi] * gain).astype(np.int64)
        assert w.sum() < 2 ** 16 and w.max() < 2 ** 16
        starts.append(lo)
        lens.append(hi - lo)
        weights.extend(w)
        offsets.append(-math.log2(gain))
    # The split output is 2 X 2^(31 - S), X the DFT of the true windowed signal (pcm / 32768,
    # window exact), S the frame's total block shift. A band shifts it by s more, so
    # (P + 2^14) >> 15 = |X|^2 2^(48 - 2 S - 2 s): log2 mel = log2 acc + 2 (S + s) - 48 - log2 gain.
    mel_off = np.round((np.array(offsets) - 48) * 2 ** LOG_Q).astype(np.int64)

    log_floor = int(math.floor(math.log2(spec.log_floor) * 2 ** LOG_Q))
    peak_power = (ref["window"].sum()) ** 2             # |X|^2 bound for |pcm| <= 1
    log_top = int(math.ceil(math.log2(peak_power * mel.sum(axis=1).max()) * 2 ** LOG_Q))
    log_centre = (log_floor + log_top) // 2
    half = 1 << (DCT_IN_SHIFT - 1)
    lq_max = max(abs((log_floor - log_centre + half) >> DCT_IN_SHIFT),
                 abs((log_top - log_centre + half) >> DCT_IN_SHIFT))

    n = np.arange(2 ** LOG_TABLE_BITS + 1)
    log_table = np.round(np.log2(1 + n / 2 ** LOG_TABLE_BITS) * 2 ** LOG_Q).astype(np.int64)

    # q_j = (c_j - mean_j) / std_j / scale + zp, c = dct @ (10 log10(2) * log2 mel)
    # with log2 mel = lq / 2^(LOG_Q - DCT_IN_SHIFT) + centre / 2^LOG_Q.
    unit = 10 * math.log10(2) / 2 ** (LOG_Q - DCT_IN_SHIFT)
    centre_db = 10 * math.log10(2) * log_centre / 2 ** LOG_Q
    mean = np.asarray(norm.mean, np.float64)
    std = np.asarray(norm.std, np.float64)
    step = std * float(input_scale)
    a_float = ref["dct"] * unit / step[:, None]
    b_float = (ref["dct"].sum(axis=1) * centre_db - mean) / step + int(input_zero_point)
    dct_rows, dct_bias, dct_shift = [], [], []
    for j in range(spec.n_mfcc):
        for shift in range(30, 0, -1):
            a = np.round(a_float[j] * 2 ** shift).astype(np.int64)
            b = int(round(b_float[j] * 2 ** shift)) + (1 << (shift - 1))
            # int16 coefficients: the firmware keeps the matrix as int16 (half the heap)
            if int(np.abs(a).sum()) * lq_max + abs(b) <= INT32_LIMIT and np.abs(a).max() < 2 ** 15:
                break
        if shift < 12:
            raise ValueError(f"MFCC {j}: normalisation std {std[j]:g} with input scale "
                             f"{input_scale:g} leaves too few bits for the integer DCT")
        dct_rows.append(a)
        dct_bias.append(b)
        dct_shift.append(shift)

    meta = {
        "version": FRONTEND_VERSION, "n_fft": n_fft, "hop": spec.hop_length,
        "n_mels": spec.n_mels, "n_mfcc": spec.n_mfcc,
        "fft_lim": FFT_LIM, "split_lim": SPLIT_LIM, "mel_bits": MEL_BITS,
        "log_q": LOG_Q, "log_table_bits": LOG_TABLE_BITS, "log_interp_bits": LOG_INTERP_BITS,
        "log_floor": log_floor, "log_top": log_top, "log_centre": log_centre,
        "dct_in_shift": DCT_IN_SHIFT,
    }
    arrays = {
        "fe.window": np.asarray(window, np.uint16),
        "fe.perm": np.asarray(_digit_reverse(4), np.uint8),
        "fe.twiddle": np.asarray(twiddle, np.int16),
        "fe.mel_start": np.asarray(starts, np.uint16),
        "fe.mel_len": np.asarray(lens, np.uint8),
        "fe.mel_w": np.asarray(weights, np.uint16),
        "fe.mel_off": np.asarray(mel_off, np.int32),
        "fe.log2": np.asarray(log_table, np.uint16),
        "fe.dct": np.asarray(np.concatenate(dct_rows), np.int32),
        "fe.dct_bias": np.asarray(dct_bias, np.int32),
        "fe.dct_shift": np.asarray(dct_shift, np.uint8),
    }
    return meta, arrays


def _bitlen(v: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values (< 2^53), 0 for 0."""
    return np.frexp(v.astype(np.float64))[1].astype(np.int64)


def _abs_or(v: np.ndarray) -> np.ndarray:
    """Per frame OR of v ^ (v >> 63) (= |v| - 1 for v < 0): its bit length n means |v| <= 2^n."""
    flat = v.reshape(v.shape[0], -1)
    return np.bitwise_or.reduce(flat ^ (flat >> 63), axis=1)


def _block_shift(v: np.ndarray, lim: int) -> np.ndarray:
    return np.maximum(_bitlen(_abs_or(v)) - lim, 0)


def _noter(trace):
    """Record min/max of every intermediate in trace (name -> (lo, hi)), for the 32-bit test."""
    def note(name, *vs):
        if trace is not None:
            lo, hi = min(int(np.min(v)) for v in vs), max(int(np.max(v)) for v in vs)
            old = trace.get(name, (lo, hi))
            trace[name] = (min(old[0], lo), max(old[1], hi))
    return note


def _cmul(br, bi, wr, wi, note):
    """Rounded (b * w) / 2^15 with b split as hi * 2^15 + lo, as the device does it."""
    bhr, bhi, blr, bli = br >> 15, bi >> 15, br & 0x7FFF, bi & 0x7FFF
    hr, hi = bhr * wr - bhi * wi, bhr * wi + bhi * wr
    lr, li = blr * wr - bli * wi + (1 << 14), blr * wi + bli * wr + (1 << 14)
    note("cmul_hi", hr, hi)
    note("cmul_lo", lr, li)
    return np.stack([hr + (lr >> 15), hi + (li >> 15)], axis=-1)


def device_features_numpy(pcm, meta: dict, arrays: dict, trace: dict = None,
                          chunk: int = 256, stage: str = "mfcc") -> np.ndarray:
    """int8 features exactly as the device computes them from int16 pcm.

    pcm: (samples,) -> (frames, n_mfcc), or a batch (clips, samples) -> (clips, frames,
    n_mfcc); frame t covers samples [hop t, hop t + n_fft). meta is the front-end meta from
    build() or a whole blob meta (its "frontend" is used); arrays holds the "fe.*" tables.
    Frames are computed `chunk` at a time to bound memory. Pass trace=dict() to collect
    (min, max) of every 32-bit intermediate. stage="mel": the stage before the DCT instead,
    (..., frames, n_mels) int32, each band's log2 power in Q9 less the table's centre.
    """
    m = meta.get("frontend", meta)
    pcm = np.asarray(pcm)
    n_fft, hop = m["n_fft"], m["hop"]
    n_frames = max(0, 1 + (pcm.shape[-1] - n_fft) // hop)
    idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]
    frames = pcm[..., idx].reshape(-1, n_fft)
    a = {k: np.asarray(v, np.int64) for k, v in arrays.items() if k.startswith("fe.")}
    width, dtype = (m["n_mels"], np.int32) if stage == "mel" else (m["n_mfcc"], np.int8)
    out = [_frame_features(frames[i:i + chunk].astype(np.int64), m, a, _noter(trace), stage)
           for i in range(0, len(frames), chunk)]
    out = np.concatenate(out) if out else np.zeros((0, width), dtype)
    return out.reshape(*pcm.shape[:-1], n_frames, width)


def _frame_features(frames, m, a, note, stage="mfcc"):
    """(n, n_fft) int16-valued frames -> (n, n_mfcc) int8, the device arithmetic."""
    n_frames, n_half = len(frames), m["n_fft"] // 2
    xw = frames * a["fe.window"][None, :]                         # |.| < 2^31
    note("window", xw)
    z = np.empty((n_frames, n_half, 2), np.int64)
    z[:, a["fe.perm"], 0] = xw[:, 0::2]
    z[:, a["fe.perm"], 1] = xw[:, 1::2]
    tw = a["fe.twiddle"].reshape(-1, 2)
    total = np.zeros(n_frames, np.int64)
    h = 1
    while h < n_half:                       # radix-4 stages, h = quarter of the group size
        s = _block_shift(z, m["fft_lim"])
        total += s
        z = z >> s[:, None, None]
        g = z.reshape(n_frames, n_half // (4 * h), 4, h, 2)
        b = [g[:, :, 0]]
        for q in (1, 2, 3):
            w = tw[q * np.arange(h) * (n_half // (2 * h))]         # W512^(q j 128 / h)
            t = _cmul(g[:, :, q, :, 0], g[:, :, q, :, 1], w[None, None, :, 0],
                      w[None, None, :, 1], note)
            t[:, :, 0] = g[:, :, q, 0]                             # twiddle 1: exact
            b.append(t)
        t0, t1, t2, t3 = b[0] + b[2], b[0] - b[2], b[1] + b[3], b[1] - b[3]
        note("fft_partial", t0, t1, t2, t3)
        jt3 = np.stack([-t3[..., 1], t3[..., 0]], axis=-1)         # j * t3
        z = np.stack([t0 + t2, t1 - jt3, t0 - t2, t1 + jt3], axis=2).reshape(n_frames, n_half, 2)
        note("fft_out", z)
        h *= 4
    s = _block_shift(z, m["split_lim"])
    total += s
    z = z >> s[:, None, None]
    ar, ai = z[:, :, 0], z[:, :, 1]
    rev = (n_half - np.arange(n_half)) % n_half
    br, bi = ar[:, rev], ai[:, rev]
    er, ei, orr, oi = ar + br, ai - bi, ai + bi, br - ar
    t = _cmul(orr, oi, tw[None, :n_half, 0], tw[None, :n_half, 1], note)
    x = np.stack([er, ei], axis=-1) + t
    x[:, 0] = np.stack([2 * (ar[:, 0] + ai[:, 0]), 0 * ar[:, 0]], axis=-1)   # bin 0: exact
    last = np.stack([2 * (ar[:, 0] - ai[:, 0]), 0 * ar[:, 0]], axis=-1)       # bin 256
    x = np.concatenate([x, last[:, None, :]], axis=1)
    note("split_out", x)

    n_mels, q = m["n_mels"], m["log_q"]
    tb, ib = m["log_table_bits"], m["log_interp_bits"]
    logs = np.empty((n_frames, n_mels), np.int64)
    pos = 0
    for b in range(n_mels):
        lo, ln = int(a["fe.mel_start"][b]), int(a["fe.mel_len"][b])
        xb = x[:, lo:lo + ln]
        sb = _block_shift(xb, m["mel_bits"])
        xb = xb >> sb[:, None, None]
        power = ((xb[..., 0] * xb[..., 0]) >> 1) + ((xb[..., 1] * xb[..., 1]) >> 1)
        note("power", power)
        acc = (((power + (1 << 14)) >> 15) * a["fe.mel_w"][None, pos:pos + ln]).sum(axis=1)
        note("mel", acc)
        pos += ln
        nb = _bitlen(acc)
        f = acc << np.maximum(31 - nb, 0)
        i0 = (f >> (31 - 1 - tb)) & ((1 << tb) - 1)
        fr = (f >> (31 - 1 - tb - ib)) & ((1 << ib) - 1)
        t0, t1 = a["fe.log2"][i0], a["fe.log2"][i0 + 1]
        lg = ((nb - 1) << q) + t0 + (((t1 - t0) * fr) >> ib)
        lg = lg + ((2 * (total + sb)) << q) + a["fe.mel_off"][b]
        note("log", lg)
        lg = np.clip(lg, m["log_floor"], m["log_top"])
        logs[:, b] = np.where(acc == 0, m["log_floor"], lg)
    ds = m["dct_in_shift"]
    lq = (logs - m["log_centre"] + (1 << (ds - 1))) >> ds
    note("lq", lq)
    if stage == "mel":
        return lq.astype(np.int32)
    dct = a["fe.dct"].reshape(m["n_mfcc"], n_mels)
    acc = lq @ dct.T + a["fe.dct_bias"][None, :]
    note("dct_acc", acc)
    out = np.clip(acc >> a["fe.dct_shift"][None, :], -128, 127)
    return out.astype(np.int8)
