"""The engine's plan, built on the host (blob format 3, docs/blob-format.md).

Everything the device used to work out at start-up from the graph (firmware/plan.py in format 2):
the kernel of each op, its arena offsets, shapes and requantisation fields, and for streaming
models the rings, the per-hop steps and the ring table. Computing it here and writing it as int32
records means the device only points at arrays: neither a planner's code nor its temporaries
share the device heap with the weights at start-up, which is what kept the default model out of
the smallest board's 93 KB heap.

A plan is two int32 arrays: `steps`, STEP_FIELDS per kernel call in order, and `cfg`, every call's
config values end to end (a step's cfg is cfg[cfg_start:cfg_start + cfg_len], the argument the
viper kernel reads). The streaming plan adds `rings` (RING_FIELDS per ring, streaming._advance).
The model's w.<op>.* arrays travel as one uint8 array `w` (each part 4-byte aligned) that the
steps point into: on the device one object instead of ~50 arrays, names and dict entries, and
no gaps between them in a heap that never compacts.
"""
import math

import numpy as np

from .graph import pack_graph

KERNELS = ("copy_in", "copy_out", "conv", "dwconv", "pool", "mean", "softmax", "add", "copy_col")
# period: the step runs on the hops where gcd(infer_every, period) divides the hops left until a
# wanted output (0: infer_every); macs: per call, so the device can report MACs per hop for any
# infer_every; arg0..arg3: byte offsets in `w` of the kernel's array arguments (-1: none; copy_in
# and copy_out get the model's input or output buffer as arg0).
STEP_FIELDS = ("kernel", "cfg_start", "cfg_len", "period", "macs", "arg0", "arg1", "arg2", "arg3")
RING_FIELDS = ("write", "length", "base", "column", "producer", "consumer", "copy")
FIX = "re-export the model with `hark export`"

# the graph record fields (training/graph.py OP_FIELDS / TENSOR_FIELDS)
_CONV, _DW, _FC, _AVG, _MAX, _MEAN, _RESHAPE, _SOFTMAX, _ADD = range(9)
_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
        "MEAN", "RESHAPE", "SOFTMAX", "ADD")
(_TYPE, _IN, _IN2, _OUT, _KH, _KW, _SH, _SW, _PT, _PL, _SAME, _LO, _HI, _ZIN, _ZOUT, _CH, _DEPTH,
 _POS, _SCRATCH, _COUNT, _M) = range(21)
_ZIN2 = 26
_LSHIFT = 27
_SOFTMAX_C = 1515870810     # gemmlowp's 48/17 constant, passed in: not a small int on 32-bit ports


class NotStreamable(ValueError):
    pass


class _Graph:
    """The graph as records (training/graph.py pack_graph; format 2's device planner read the
    same records, with the same field numbers)."""

    def __init__(self, g: dict):
        self.t, self.ops = pack_graph(g)
        self.input = g["input"]
        self.output = g["output"]

    def shape(self, i):
        r = self.t[i]
        return tuple(r[1:1 + r[0]])

    def offset(self, i):
        return self.t[i][6]


class _Plan:
    def __init__(self, where):
        self.where = where      # w.<op>.<part> -> byte offset in `w`
        self.steps = []
        self.cfg = []

    def add(self, kernel, cfg, op=-1, parts=(), period=0, macs=0):
        """Append a step whose array arguments are op's w.<op>.<part>; returns its index."""
        cfg = [int(v) for v in cfg]
        if min(cfg) < 0:    # the kernels read cfg as uint32 on 64-bit ports
            raise ValueError(f"negative engine config value in a {kernel} step: {cfg}; {FIX}")
        args = [self.where[f"w.{op}.{part}"] for part in parts] + [-1] * (4 - len(parts))
        self.steps.append([KERNELS.index(kernel), len(self.cfg), len(cfg), period, macs] + args)
        self.cfg += cfg
        return len(self.steps) - 1

    def start(self, step):
        return self.steps[step][1]

    def arrays(self, prefix):
        return {prefix + "steps": np.array(self.steps, np.int32).reshape(-1),
                prefix + "cfg": np.array(self.cfg, np.int32)}


def _conv(p, n, op, x_off, y_off, scratch, h, w, cin, oh, ow, period=0, macs=0):
    """A CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED call over an h x w x cin input at x_off
    (scratch: im2col offset, < 0 when patches are read in place)."""
    cfg = [x_off, y_off, max(scratch, 0), h, w, cin, oh, ow, op[_CH], op[_KH], op[_KW],
           op[_SH], op[_SW], op[_PT], op[_PL], op[_ZIN] + 128, op[_ZOUT] + 128,
           op[_LO] + 128, op[_HI] + 128]
    parts = ("filter", "bias", "mult", "shift")
    if op[_TYPE] == _DW:
        return p.add("dwconv", cfg, n, parts, period, macs)
    return p.add("conv", cfg + [1 if scratch < 0 else 0, op[_DEPTH]], n, parts, period, macs)


def _pool(p, op, x_off, y_off, in_hwc, out_hw, period=0):
    cfg = [x_off, y_off, 0, *in_hwc, *out_hw, 0, op[_KH], op[_KW], op[_SH], op[_SW], op[_PT],
           op[_PL], 0, 0, op[_LO] + 128, op[_HI] + 128, 1 if op[_TYPE] == _MAX else 0]
    return p.add("pool", cfg, period=period)


def _softmax(p, n, x_off, y_off, rows, depth):
    return p.add("softmax", [x_off, y_off, rows, depth, _SOFTMAX_C], n, ("exp",))


def windowed(g: dict, where: dict) -> dict:
    """The whole-window plan (engine.Interpreter): arrays p.w.steps, p.w.cfg."""
    G = _Graph(g)
    p = _Plan(where)
    p.add("copy_in", [G.offset(G.input), math.prod(G.shape(G.input))])
    for n, op in enumerate(G.ops):
        kind = op[_TYPE]
        if kind == _RESHAPE:
            continue
        x, y = op[_IN], op[_OUT]
        xs, ys = G.shape(x), G.shape(y)
        if kind in (_CONV, _DW, _FC):
            if kind == _FC:
                h, wd, cin, oh, ow = op[_POS], 1, op[_DEPTH], op[_POS], 1
            else:
                (h, wd, cin), (oh, ow) = xs[1:4], ys[1:3]
            _conv(p, n, op, G.offset(x), G.offset(y), op[_SCRATCH], h, wd, cin, oh, ow)
        elif kind in (_AVG, _MAX):
            _pool(p, op, G.offset(x), G.offset(y), xs[1:4], ys[1:3])
        elif kind == _MEAN:
            m = op[_M]
            p.add("mean", [G.offset(x), G.offset(y), op[_COUNT], xs[-1], op[_ZIN] + 128,
                           op[_ZOUT] + 128, m >> 16, m & 0xFFFF, op[_M + 1] + 32])
        elif kind == _SOFTMAX:
            _softmax(p, n, G.offset(x), G.offset(y), math.prod(ys) // ys[-1], ys[-1])
        else:   # ADD
            cfg = [G.offset(x), G.offset(op[_IN2]), G.offset(y), math.prod(ys), op[_ZIN] + 128,
                   op[_ZIN2] + 128, op[_ZOUT] + 128, op[_LO] + 128, op[_HI] + 128]
            for k in range(3):
                m = op[_M + 2 * k]
                cfg += [m >> 16, m & 0xFFFF, op[_M + 2 * k + 1] + 32]
            p.add("add", cfg + [op[_LSHIFT]])
    p.add("copy_out", [G.offset(G.output), math.prod(G.shape(G.output))])
    return p.arrays("p.w.")


def _layers(G):
    """Walk the graph: (stream layers, pooling or None, head ops, frame bytes, frames,
    final dilation, final channels).
    Stream layer: (op index, op, k, d_in, T_in, C_in, C_out); pooling: (op index, op, T, d, C);
    head op: (op index, op). Raises NotStreamable."""
    shape = G.shape(G.input)
    if len(shape) < 3 or shape[0] != 1:
        raise NotStreamable("model input %s is not [1, time, features...]" % (shape,))
    T = frames = shape[1]
    C = width = math.prod(shape[2:])
    d = 1
    cur = G.input
    layers, pool, head = [], None, []
    for n, op in enumerate(G.ops):
        kind = op[_TYPE]
        name = _OPS[kind]
        x = op[_IN]
        if x != cur or op[_IN2] >= 0:
            raise NotStreamable("op %d (%s) does not take the previous op's output alone; only "
                                "a plain chain of layers streams" % (n, name))
        cur = op[_OUT]
        yshape = G.shape(cur)
        if kind == _RESHAPE:
            if T > 1 and (len(yshape) < 3 or yshape[1] != T):
                raise NotStreamable("op %d RESHAPE to %s moves the time axis" % (n, yshape))
            continue
        if pool is None and not head:
            # still on the time axis
            xs = G.shape(x)
            if kind in (_CONV, _DW):
                k, s = op[_KH], op[_SH]
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
            if kind in (_AVG, _MAX):
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
        if kind in (_FC, _SOFTMAX):
            head.append((n, op))
            continue
        raise NotStreamable("op %d %s after the time axis is pooled; only FULLY_CONNECTED, "
                            "SOFTMAX and RESHAPE stream there" % (n, name))
    if not layers:
        raise NotStreamable("the model has no temporal convolution to stream")
    return layers, pool, head, width, frames, d, C


def streaming(g: dict, where: dict):
    """The one-column-per-hop plan (streaming.StreamingInterpreter; see firmware/streaming.py):
    (meta, arrays p.s.steps, p.s.cfg, p.s.rings), meta = {arena_bytes, frames, width,
    input_cfg: where the input column's 2-value cfg starts in p.s.cfg, embedding: the arena
    offset of the last dense layer's input}. Raises NotStreamable."""
    G = _Graph(g)
    layers, pool, head, width, frames, D, C_end = _layers(G)

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
    for _, op in head:
        head_outs.append(size)
        size += math.prod(G.shape(op[_OUT]))

    # period of each stream's producer: the head wants the last stream every N hops; a layer
    # reading stream j at dilation d only ever needs the columns of one residue class mod
    # gcd(., d). Stored as the number whose gcd with N is the period (0: N itself).
    period = [0] * len(need)
    q = D if pool and pool[2] > 1 else 0
    period[-1] = q
    for j in range(len(layers) - 1, -1, -1):
        if layers[j][2] > 1:
            q = math.gcd(q, layers[j][3])
        period[j] = q
    period[0] = 1       # the input ring is written every hop

    p = _Plan(where)
    # (step index, cfg field) of each ring's producer and consumer (-1: the input column)
    prod = [(-1, 0)] + [None] * len(layers)
    cons = [None] * len(need)
    copies = [None] * len(need)
    for j, (n, op, k, d, _, C, _) in enumerate(layers):
        if need[j] > 1:
            copies[j] = p.add("copy_col", [0, 0, C], period=period[j])
        step = _conv(p, n, op, bases[j], bases[j + 1], scratch[j], k, d, C, 1, 1,
                     period[j + 1], op[_CH] * op[_DEPTH])
        cons[j] = (step, 0)
        prod[j + 1] = (step, 1)
    last = len(layers)
    if need[last] > 1:
        copies[last] = p.add("copy_col", [0, 0, C_end], period=period[last])
    if pool:
        # the T remaining columns at dilation D: an image of T rows and D columns
        cons[last] = (_pool(p, pool[1], bases[last], head_off, (pool[2], D, C_end), (1, 1)), 0)
        src = head_off
    else:
        src = bases[last]
    embedding = None
    for (n, op), dst in zip(head, head_outs):
        if op[_TYPE] == _FC:
            embedding = src     # the last dense layer's input: graph.embedding_tensor
            _conv(p, n, op, src, dst, -1, op[_POS], 1, op[_DEPTH], op[_POS], 1,
                  macs=op[_POS] * op[_CH] * op[_DEPTH])
        else:
            ys = G.shape(op[_OUT])
            _softmax(p, n, src, dst, math.prod(ys) // ys[-1], ys[-1])
        src = dst
    p.add("copy_out", [src, math.prod(G.shape(G.output))])
    input_cfg = len(p.cfg)
    p.cfg += [bases[0], width]

    def at(ref):
        return (input_cfg if ref[0] < 0 else p.start(ref[0])) + ref[1]

    rings = []
    for j, R in enumerate(need):
        if R > 1:
            copy = p.start(copies[j]) + 1 if copies[j] is not None else 0
            ring = dict(write=0, length=R, base=bases[j], column=cols[j], producer=at(prod[j]),
                        consumer=at(cons[j]), copy=copy)
            rings += [ring[field] for field in RING_FIELDS]
    arrays = p.arrays("p.s.")
    arrays["p.s.rings"] = np.array(rings, np.int32)
    meta = {"arena_bytes": size, "frames": frames, "width": width, "input_cfg": input_cfg}
    if embedding is not None:
        meta["embedding"] = embedding   # arena offset before firmware/plan.py stores rings once
    return meta, arrays


def pack_weights(arrays: dict):
    """The w.* arrays end to end as one uint8 array, each part 4-byte aligned (the kernels read
    int32 parts through ptr32): (w, {name: byte offset})."""
    out = bytearray()
    where = {}
    for name, a in arrays.items():
        if name.startswith("w."):
            out += bytes(-len(out) % 4)
            where[name] = len(out)
            a = np.asarray(a)
            out += np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
    return np.frombuffer(bytes(out), np.uint8), where


def build(g: dict, arrays: dict):
    """Graph g and its w.* arrays -> (stream, arrays for the blob: `w`, both plans, the rest of
    `arrays`); stream is streaming()'s meta, or why the model does not stream (a string), for
    meta["model"]["stream"]."""
    w, where = pack_weights(arrays)
    out = {k: v for k, v in arrays.items() if not k.startswith("w.")}
    out["w"] = w
    out.update(windowed(g, where))
    try:
        stream, more = streaming(g, where)
    except NotStreamable as exc:
        return str(exc), out
    return stream, {**out, **more}
