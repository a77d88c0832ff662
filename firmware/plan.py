# hark start-up planning: reads a blob's graph records and turns every op into a preplanned
# kernel call, for engine.Interpreter (the whole window) and streaming.StreamingInterpreter
# (one new column per layer per hop). Start-up only: the runtime drops this module once the
# engine is built, so neither this code nor the graph records stay in the heap while audio runs.
#
# Records (int32, docs/blob-format.md; training/graph.py writes them): g.tensors holds per tensor
# rank, 4 dims, zero point, arena offset; g.ops per op the fields numbered below.
import array

from micropython import const

import engine

OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
       "MEAN", "RESHAPE", "SOFTMAX", "ADD")
_CONV = const(0)
_DW = const(1)
_FC = const(2)
_AVG = const(3)
_MAX = const(4)
_MEAN = const(5)
_RESHAPE = const(6)
_SOFTMAX = const(7)
_ADD = const(8)

_T = const(7)           # values per tensor record
_O = const(28)          # values per op record
_TYPE = const(0)        # index in OPS
_IN = const(1)
_IN2 = const(2)         # -1: none
_OUT = const(3)
_KH = const(4)          # kernel, stride, padding (top, left), SAME
_KW = const(5)
_SH = const(6)
_SW = const(7)
_PT = const(8)
_PL = const(9)
_SAME = const(10)
_LO = const(11)         # activation range
_HI = const(12)
_ZIN = const(13)        # zero points
_ZOUT = const(14)
_CH = const(15)         # output channels
_DEPTH = const(16)      # values per dot product
_POS = const(17)        # FULLY_CONNECTED rows
_SCRATCH = const(18)    # arena offset of the im2col patch, -1: none
_COUNT = const(19)      # MEAN: values averaged
_M = const(20)          # multiplier, shift pairs: MEAN one, ADD three (input 1, input 2, output)
_ZIN2 = const(26)
_LSHIFT = const(27)

_FIX = "re-export the model with `hark export`"


class Graph:
    """A blob's graph records, read in place (no per-op objects)."""

    def __init__(self, blob):
        t = blob.arrays.get("g.tensors")
        o = blob.arrays.get("g.ops")
        if t is None or o is None or len(t) % _T or len(o) % _O:
            raise ValueError("the blob has no usable graph records; " + _FIX)
        model = blob.meta["model"]
        self.t = memoryview(t)
        self.o = memoryview(o)
        self.n = len(o) // _O
        self.input = model["input"]["tensor"]
        self.output = model["output"]["tensor"]
        nt = len(t) // _T
        for i in range(nt):
            if not 0 <= t[i * _T] <= 4:
                raise ValueError("graph tensor %d has rank %d; %s" % (i, t[i * _T], _FIX))
        for n in range(self.n):
            op = self.op(n)
            if not 0 <= op[_TYPE] < len(OPS):
                raise ValueError("model op %d has type %d, which this engine does not support "
                                 "(supported: %s); update the firmware or re-export a model with "
                                 "supported ops" % (n, op[_TYPE], ", ".join(OPS)))
            for f in (_IN, _IN2, _OUT):
                if op[f] >= nt or op[f] < (-1 if f == _IN2 else 0):
                    raise ValueError("model op %d refers to tensor %d of %d; %s"
                                     % (n, op[f], nt, _FIX))
        if not (0 <= self.input < nt and 0 <= self.output < nt):
            raise ValueError("model input/output tensor out of range; " + _FIX)

    def op(self, n):
        return self.o[n * _O:(n + 1) * _O]

    def shape(self, i):
        r = self.t[i * _T:(i + 1) * _T]
        return tuple(r[1:1 + r[0]])

    def offset(self, i):
        return self.t[i * _T + 6]


def windowed(it, blob):
    """Set up engine.Interpreter `it`: arena, input/output buffers and the plan of kernel calls."""
    g = Graph(blob)
    meta = blob.meta
    model = meta["model"]
    arrays = blob.arrays
    it.labels = meta["labels"]
    it.macs = model["macs"]
    it.arena = bytearray(model["arena_bytes"])
    it.input = bytearray(_numel(g.shape(g.input)))
    it.output = bytearray(_numel(g.shape(g.output)))
    it.output_scale = model["output"]["scale"]
    it.output_zero_point = model["output"]["zero_point"]
    dummy = bytearray(4)
    plan = [(engine._copy_in, _cfg((g.offset(g.input), len(it.input))), it.input,
             dummy, dummy, dummy)]
    for n in range(g.n):
        op = g.op(n)
        kind = op[_TYPE]
        if kind == _RESHAPE:
            continue
        x = op[_IN]
        y = op[_OUT]
        xs = g.shape(x)
        ys = g.shape(y)
        w = "w.%d." % n
        if kind in (_CONV, _DW, _FC):
            if kind == _FC:
                h, wd, cin = op[_POS], 1, op[_DEPTH]
                oh, ow = h, 1
            else:
                h, wd, cin = xs[1:4]
                oh, ow = ys[1:3]
            plan.append(conv_step(op, arrays[w + "filter"], arrays[w + "bias"],
                                  arrays[w + "mult"], arrays[w + "shift"], g.offset(x), g.offset(y),
                                  op[_SCRATCH], h, wd, cin, oh, ow))
        elif kind in (_AVG, _MAX):
            plan.append(pool_step(op, g.offset(x), g.offset(y), xs[1:4], ys[1:3]))
        elif kind == _MEAN:
            m = op[_M]
            cfg = (g.offset(x), g.offset(y), op[_COUNT], xs[-1], op[_ZIN] + 128, op[_ZOUT] + 128,
                   m >> 16, m & 0xFFFF, op[_M + 1] + 32)
            plan.append((engine._mean, _cfg(cfg), dummy, dummy, dummy, dummy))
        elif kind == _SOFTMAX:
            depth = ys[-1]
            plan.append(softmax_step(arrays[w + "exp"], g.offset(x), g.offset(y),
                                     _numel(ys) // depth, depth))
        else:   # ADD
            cfg = [g.offset(x), g.offset(op[_IN2]), g.offset(y), _numel(ys), op[_ZIN] + 128,
                   op[_ZIN2] + 128, op[_ZOUT] + 128, op[_LO] + 128, op[_HI] + 128]
            for k in range(3):
                m = op[_M + 2 * k]
                cfg += [m >> 16, m & 0xFFFF, op[_M + 2 * k + 1] + 32]
            cfg.append(op[_LSHIFT])
            plan.append((engine._add, _cfg(cfg), dummy, dummy, dummy, dummy))
    plan.append((engine._copy_out, _cfg((g.offset(g.output), len(it.output))),
                 it.output, dummy, dummy, dummy))
    it._plan = tuple(plan)


def conv_step(op, filt, bias, mult, shift, x_off, y_off, scratch, h, w, cin, oh, ow):
    """Plan step of a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED op over an h x w x cin input
    at arena offset x_off (scratch: im2col offset, < 0 when patches are read in place)."""
    cfg = [x_off, y_off, max(scratch, 0), h, w, cin, oh, ow, op[_CH], op[_KH], op[_KW],
           op[_SH], op[_SW], op[_PT], op[_PL], op[_ZIN] + 128, op[_ZOUT] + 128,
           op[_LO] + 128, op[_HI] + 128]
    if op[_TYPE] == _DW:
        return (engine._dwconv, _cfg(cfg), filt, bias, mult, shift)
    cfg += [1 if scratch < 0 else 0, op[_DEPTH]]
    return (engine._conv, _cfg(cfg), filt, bias, mult, shift)


def pool_step(op, x_off, y_off, in_hwc, out_hw):
    """Plan step of an AVERAGE_POOL_2D / MAX_POOL_2D op (in_hwc = input h, w, c)."""
    cfg = [x_off, y_off, 0] + list(in_hwc) + list(out_hw) + [
        0, op[_KH], op[_KW], op[_SH], op[_SW], op[_PT], op[_PL], 0, 0,
        op[_LO] + 128, op[_HI] + 128, 1 if op[_TYPE] == _MAX else 0]
    dummy = bytearray(4)
    return (engine._pool, _cfg(cfg), dummy, dummy, dummy, dummy)


def softmax_step(exp, x_off, y_off, rows, depth):
    dummy = bytearray(4)
    return (engine._softmax, _cfg((x_off, y_off, rows, depth, 1515870810)), exp, dummy, dummy,
            dummy)


def _cfg(values):
    """Op config as int32; negatives would read back as 2**32 - v on 64-bit ports."""
    a = array.array("i", values)
    for v in a:
        if v < 0:
            raise ValueError("negative engine config value %d; %s" % (v, _FIX))
    return a


def _put(dst, at, values):
    for v in values:
        dst[at] = v
        at += 1


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


# --- streaming (see streaming.py for the idea) ---------------------------------------------------

class NotStreamable(ValueError):
    pass


def _layers(g):
    """Walk the graph: (stream layers, pooling or None, head ops, frame bytes, frames,
    final dilation, final channels).
    Stream layer: (op index, op, k, d_in, T_in, C_in, C_out); pooling: (op index, op, T, d, C);
    head op: (op index, op). Raises NotStreamable."""
    shape = g.shape(g.input)
    if len(shape) < 3 or shape[0] != 1:
        raise NotStreamable("model input %s is not [1, time, features...]" % (shape,))
    T = shape[1]
    C = _numel(shape[2:])
    frames = T
    width = C
    d = 1
    cur = g.input
    layers = []
    pool = None
    head = []
    for n in range(g.n):
        op = g.op(n)
        kind = op[_TYPE]
        name = OPS[kind]
        x = op[_IN]
        if x != cur or op[_IN2] >= 0:
            raise NotStreamable("op %d (%s) does not take the previous op's output alone; only "
                                "a plain chain of layers streams" % (n, name))
        cur = op[_OUT]
        yshape = g.shape(cur)
        if kind == _RESHAPE:
            if T > 1 and (len(yshape) < 3 or yshape[1] != T):
                raise NotStreamable("op %d RESHAPE to %s moves the time axis" % (n, yshape))
            continue
        if pool is None and not head:
            # still on the time axis
            xs = g.shape(x)
            if kind == _CONV or kind == _DW:
                k = op[_KH]
                s = op[_SH]
                if len(xs) != 4 or xs[2] != 1 or op[_KW] != 1:
                    raise NotStreamable(
                        "op %d %s has a %dx%d kernel over a %s input: only (k, 1) kernels along "
                        "time with the coefficients as channels stream" % (n, name, k, op[_KW], xs))
                if op[_SAME] or op[_PT] or op[_PL]:
                    raise NotStreamable("op %d %s pads (%s); streaming needs VALID convolutions"
                                        % (n, name, "SAME" if op[_SAME] else "VALID"))
                if (T - k) % s:
                    raise NotStreamable(
                        "op %d %s: (input length %d - kernel %d) %% stride %d = %d, so its newest "
                        "output does not end at the newest frame; streaming needs "
                        "(in_len - k) %% stride == 0 at every layer" % (n, name, T, k, s, (T - k) % s))
                layers.append((n, op, k, d, T, C, op[_CH]))
                T = (T - k) // s + 1
                C = op[_CH]
                d *= s
                continue
            if kind == _AVG or kind == _MAX:
                if (len(xs) != 4 or xs[2] != 1 or op[_KH] != T or op[_KW] != 1 or yshape[1] != 1
                        or op[_PT] or op[_PL]):
                    raise NotStreamable("op %d %s with kernel %dx%d over %s does not pool all %d "
                                        "remaining time steps" % (n, name, op[_KH], op[_KW], xs, T))
                pool = (n, op, T, d, C)
                T = 1
                continue
            if T > 1:
                raise NotStreamable("op %d %s on %d time steps: only convolutions and a global "
                                    "time pooling stream" % (n, name, T))
        if kind == _FC or kind == _SOFTMAX:
            head.append((n, op))
            continue
        raise NotStreamable("op %d %s after the time axis is pooled; only FULLY_CONNECTED, "
                            "SOFTMAX and RESHAPE stream there" % (n, name))
    if not layers:
        raise NotStreamable("the model has no temporal convolution to stream")
    return layers, pool, head, width, frames, d, C


def reason(blob):
    """None when the blob's model streams, else why not."""
    try:
        _layers(Graph(blob))
    except NotStreamable as exc:
        return str(exc)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        return "no usable model graph (%s)" % (exc,)
    return None


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def streaming(it, blob, every):
    """Set up streaming.StreamingInterpreter `it`: rings in one arena, the per-hop plan and the
    ring table _advance re-points every hop."""
    import streaming as s
    g = Graph(blob)
    meta = blob.meta
    model = meta["model"]
    arrays = blob.arrays
    layers, pool, head, width, frames, D, C_end = _layers(g)
    every = max(1, int(every))
    it.labels = meta["labels"]
    it.frames = frames
    it.width = width
    it.window_macs = model["macs"]
    it.every = every
    it.output = bytearray(_numel(g.shape(g.output)))
    it.output_scale = model["output"]["scale"]
    it.output_zero_point = model["output"]["zero_point"]

    # ring lengths: a stream keeps as many columns as its consumer reads
    need = [(L[2] - 1) * L[3] + 1 for L in layers]
    need.append((pool[2] - 1) * pool[3] + 1 if pool else 1)
    cols = [width] + [L[6] for L in layers]
    size = 0
    bases = []
    for R, C in zip(need, cols):
        bases.append(size)
        size += (2 * R if R > 1 else 1) * C
    scratch = []
    for L in layers:
        if L[1][_TYPE] == _CONV and L[2] > 1 and L[3] > 1:
            scratch.append(size)      # gathered patch of a dilated (k, 1) convolution
            size += L[2] * L[5]
        else:
            scratch.append(-1)
    head_off = size
    if pool:
        size += C_end
    head_outs = []
    for (_, op) in head:
        head_outs.append(size)
        size += _numel(g.shape(op[_OUT]))
    it.arena = bytearray(size)

    # period (in hops) of each stream's producer: the head wants s_L every N hops; a layer
    # reading s_j at dilation d only ever needs the columns of one residue class mod gcd(., d)
    period = [every] * len(need)
    p = _gcd(every, D) if pool and pool[2] > 1 else every
    period[-1] = p
    for j in range(len(layers) - 1, -1, -1):
        if layers[j][2] > 1:
            p = _gcd(p, layers[j][3])
        period[j] = p
    period[0] = 1       # the input ring is written every hop

    dummy = bytearray(4)
    steps = []
    periods = []
    # (step index, cfg field) of each ring's producer and consumer, filled below
    prod = [None] * len(need)
    cons = [None] * len(need)
    in_cfg = _cfg((bases[0], width))
    prod[0] = (-1, 0)
    copies = [None] * len(need)
    for j, (n, op, k, d, _, C, cout) in enumerate(layers):
        if need[j] > 1:
            copies[j] = len(steps)
            steps.append((s._copy_col, _cfg((0, 0, C)), dummy, dummy, dummy, dummy))
            periods.append(period[j])
        w = "w.%d." % n
        steps.append(conv_step(op, arrays[w + "filter"], arrays[w + "bias"], arrays[w + "mult"],
                               arrays[w + "shift"], bases[j], bases[j + 1], scratch[j], k, d, C,
                               1, 1))
        periods.append(period[j + 1])
        cons[j] = (len(steps) - 1, 0)
        prod[j + 1] = (len(steps) - 1, 1)
    last = len(layers)
    if need[last] > 1:
        copies[last] = len(steps)
        steps.append((s._copy_col, _cfg((0, 0, C_end)), dummy, dummy, dummy, dummy))
        periods.append(period[last])
    head_from = len(steps)
    if pool:
        # the T remaining columns at dilation D: an image of T rows and D columns
        steps.append(pool_step(pool[1], bases[last], head_off, (pool[2], D, C_end), (1, 1)))
        cons[last] = (len(steps) - 1, 0)
        src = head_off
    else:
        src = bases[last]
    macs = 0       # per `every` hops
    for j, L in enumerate(layers):
        macs += L[1][_CH] * L[1][_DEPTH] * (every // period[j + 1])
    for (n, op), dst in zip(head, head_outs):
        w = "w.%d." % n
        if op[_TYPE] == _FC:
            steps.append(conv_step(op, arrays[w + "filter"], arrays[w + "bias"],
                                   arrays[w + "mult"], arrays[w + "shift"], src, dst, -1,
                                   op[_POS], 1, op[_DEPTH], op[_POS], 1))
            macs += op[_POS] * op[_CH] * op[_DEPTH]
        else:
            ys = g.shape(op[_OUT])
            steps.append(softmax_step(arrays[w + "exp"], src, dst, _numel(ys) // ys[-1], ys[-1]))
        src = dst
    steps.append((engine._copy_out, _cfg((src, len(it.output))), it.output, dummy, dummy, dummy))
    periods += [every] * (len(steps) - head_from)
    it.macs = macs // every       # average per hop

    # all step configs in one int32 array so _advance can re-point them per hop
    starts = []
    total = 0
    for st in steps:
        starts.append(total)
        total += len(st[1])
    starts_in = total
    flat = array.array("i", range(total + 2))   # sized once: no regrowth, no fragments
    for i, st in enumerate(steps):
        _put(flat, starts[i], st[1])
    _put(flat, starts_in, in_cfg)
    it._cfgs = flat
    mv = memoryview(flat)
    plan = []
    for i, st in enumerate(steps):
        plan.append((st[0], mv[starts[i]:starts[i] + len(st[1])]) + st[2:] + (periods[i],))
    it._plan = tuple(plan)
    it._in_cfg = mv[starts_in:starts_in + 2]

    def at(ref):
        return (starts_in if ref[0] < 0 else starts[ref[0]]) + ref[1]

    table = []
    for j, R in enumerate(need):
        if R == 1:
            continue
        copy = starts[copies[j]] + 1 if copies[j] is not None else 0
        table += [0, R, bases[j], cols[j], at(prod[j]), at(cons[j]), copy]
    it._rings = _cfg(table)
    it._n_rings = len(table) // s._RING
    it._due = 0      # hops until the next wanted output
