# hark incremental streaming inference for temporal CNNs (the `tcn` family).
#
# The windowed engine re-runs the whole 49-frame window every 20 ms hop although only one
# frame is new. For a chain of VALID (k, 1) convolutions over time (coefficients as channels)
# each layer's newest output column depends only on its input's last k columns, read at the
# layer's dilation in hops d = product of the earlier strides. So each hop computes exactly one
# new column per layer from per-layer rings of past columns, pools the last T columns of the
# final layer (at dilation D) and runs the dense head: the same integers, bit for bit, as the
# windowed engine (and TFLite Micro) on the window ending at that hop, at a fraction of the MACs.
#
# Geometry trick: a ring window of (k-1)*d+1 columns of C bytes, viewed as an image of H = k rows
# and W = d columns, puts a (k, 1) kernel's taps exactly on columns t, t-d, ..., t-(k-1)d; so the
# engine's own viper kernels (engine.conv_step/pool_step, their requantisation) run unchanged
# with OH = OW = 1. Rings are stored twice over (2R columns): the newest column is written at
# slot w+R and copied to slot w, so the last R columns are always one contiguous run.
#
# Streamable: the graph's time axis is dim 1; every op until the pooling is CONV_2D or
# DEPTHWISE_CONV_2D with kernel (k, 1), VALID, on a width-1 input, and (in_len - k) % stride == 0
# (so a strided layer's newest output ends at the newest input); then AVERAGE/MAX_POOL_2D over
# all remaining time (or a single remaining column), then FULLY_CONNECTED/SOFTMAX/RESHAPE.
# `reason(meta)` says why another model is not (dscnn, tiny_conv: 2-D kernels, SAME padding).
import micropython

import engine

_RING = 7   # ring table fields (int32): write index, R, base, column bytes, producer cfg index,
            # consumer cfg index, 1 + cfg index of the column copy's source field (0: no copy)


@micropython.viper
def _advance(cfgs: ptr32, rings: ptr32, n: int):
    # Point every producer at its ring's newest slot w+R, the column copy at slot w and every
    # consumer at the oldest of its last R columns; then step the write indices.
    for i in range(n):
        r = ptr32(int(rings) + i * 28)      # _RING fields of 4 bytes
        w = r[0]
        R = r[1]
        base = r[2]
        C = r[3]
        newest = base + (w + R) * C
        cfgs[r[4]] = newest
        w += 1
        if w == R:
            w = 0
        cfgs[r[5]] = base + w * C
        k = r[6]
        if k:
            cfgs[k - 1] = newest
            cfgs[k] = newest - R * C
        r[0] = w


@micropython.viper
def _copy_col(arena: ptr8, cfg: ptr32, a: ptr8, b: ptr8, c: ptr8, d: ptr8):
    # the second copy of a ring's newest column (cfg: source, destination, bytes)
    src = ptr8(int(arena) + cfg[0])
    dst = ptr8(int(arena) + cfg[1])
    for i in range(cfg[2]):
        dst[i] = src[i]


class NotStreamable(ValueError):
    pass


def _layers(g):
    """Walk the graph: (stream layers, pooling op or None, head ops, frame bytes, frames,
    final dilation, final channels).
    Stream layer: (op index, op, k, d_in, T_in, C_in, C_out). Raises NotStreamable."""
    tensors = g["tensors"]
    ops = g["ops"]
    shape = tensors[g["input"]]["shape"]
    if len(shape) < 3 or shape[0] != 1:
        raise NotStreamable("model input %s is not [1, time, features...]" % (shape,))
    T = shape[1]
    C = engine._numel(shape[2:])
    frames = T
    width = C
    d = 1
    cur = g["input"]
    layers = []
    pool = None
    head = []
    for n, op in enumerate(ops):
        kind = op["type"]
        x = op["inputs"][0]
        if x != cur or len(op["inputs"]) != 1:
            raise NotStreamable("op %d (%s) does not take the previous op's output alone; only "
                                "a plain chain of layers streams" % (n, kind))
        cur = op["outputs"][0]
        yshape = tensors[cur]["shape"]
        if kind == "RESHAPE":
            if T > 1 and (len(yshape) < 3 or yshape[1] != T):
                raise NotStreamable("op %d RESHAPE to %s moves the time axis" % (n, yshape))
            continue
        if pool is None and not head:
            # still on the time axis
            xs = tensors[x]["shape"]
            if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                o = op["options"]
                k, kw = o["kernel"]
                s = o["stride"][0]
                if len(xs) != 4 or xs[2] != 1 or kw != 1:
                    raise NotStreamable(
                        "op %d %s has a %dx%d kernel over a %s input: only (k, 1) kernels along "
                        "time with the coefficients as channels stream" % (n, kind, k, kw, xs))
                if o["padding"] != "VALID" or o["pad"] != [0, 0]:
                    raise NotStreamable("op %d %s pads (%s); streaming needs VALID convolutions"
                                        % (n, kind, o["padding"]))
                if (T - k) % s:
                    raise NotStreamable(
                        "op %d %s: (input length %d - kernel %d) %% stride %d = %d, so its newest "
                        "output does not end at the newest frame; streaming needs "
                        "(in_len - k) %% stride == 0 at every layer" % (n, kind, T, k, s, (T - k) % s))
                layers.append((n, op, k, d, T, C, o["channels"]))
                T = (T - k) // s + 1
                C = o["channels"]
                d *= s
                continue
            if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
                o = op["options"]
                if (len(xs) != 4 or xs[2] != 1 or o["kernel"] != [T, 1] or yshape[1] != 1
                        or o["pad"] != [0, 0]):
                    raise NotStreamable("op %d %s with kernel %s over %s does not pool all %d "
                                        "remaining time steps" % (n, kind, o["kernel"], xs, T))
                pool = (n, op, T, d, C)
                T = 1
                continue
            if T > 1:
                raise NotStreamable("op %d %s on %d time steps: only convolutions and a global "
                                    "time pooling stream" % (n, kind, T))
        if kind in ("FULLY_CONNECTED", "SOFTMAX"):
            head.append((n, op))
            continue
        raise NotStreamable("op %d %s after the time axis is pooled; only FULLY_CONNECTED, "
                            "SOFTMAX and RESHAPE stream there" % (n, kind))
    if not layers:
        raise NotStreamable("the model has no temporal convolution to stream")
    return layers, pool, head, width, frames, d, C


def reason(meta):
    """None when the blob's model streams, else why not (the runtime then runs it windowed)."""
    try:
        _layers(meta["model"]["graph"])
    except NotStreamable as exc:
        return str(exc)
    except (KeyError, TypeError, IndexError) as exc:
        return "no usable model graph (%r)" % (exc,)
    return None


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


class StreamingInterpreter:
    """push(frame) one int8 feature frame per hop; .output (int8 bytes) then equals what
    engine.Interpreter gives on the window of the last `frames` frames. fill(frame) starts the
    stream as if that frame had filled the whole window. Allocates nothing per push.

    every=N: the output is only wanted every N-th push (the runtime's infer_every; the first
    N pushes after fill()). A layer whose columns are read at a dilation sharing a factor with
    N then runs only on the hops that feed a wanted output: e.g. N=2 halves the work of every
    layer after a stride-2 layer. .output is valid on those N-th pushes only."""

    def __init__(self, blob, every=1):
        meta = blob.meta
        model = meta["model"]
        g = model["graph"]
        arrays = blob.arrays
        tensors = g["tensors"]
        layers, pool, head, width, frames, D, C_end = _layers(g)
        every = max(1, int(every))
        tout = tensors[g["output"]]
        self.labels = meta["labels"]
        self.frames = frames
        self.width = width
        self.window_macs = model["macs"]
        self.every = every
        self.output = bytearray(engine._numel(tout["shape"]))
        self.output_scale = tout["scale"]
        self.output_zero_point = tout["zero_point"]

        # ring lengths: a stream keeps as many columns as its consumer reads
        need = [(k - 1) * d + 1 for (_, _, k, d, _, _, _) in layers]
        need.append((pool[2] - 1) * pool[3] + 1 if pool else 1)
        cols = [width] + [L[6] for L in layers]
        size = 0
        bases = []
        for R, C in zip(need, cols):
            bases.append(size)
            size += (2 * R if R > 1 else 1) * C
        scratch = []
        for (_, op, k, d, _, C, _) in layers:
            if op["type"] == "CONV_2D" and k > 1 and d > 1:
                scratch.append(size)      # gathered patch of a dilated (k, 1) convolution
                size += k * C
            else:
                scratch.append(None)
        head_off = size
        if pool:
            size += C_end
        head_outs = []
        for (_, op) in head:
            head_outs.append(size)
            size += engine._numel(tensors[op["outputs"][0]]["shape"])
        self.arena = bytearray(size)

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
        self._copy_in = (engine._copy_in, engine._cfg((bases[0], width)))
        prod[0] = (-1, 0)
        copies = [None] * len(need)
        for j, (n, op, k, d, _, C, cout) in enumerate(layers):
            if need[j] > 1:
                copies[j] = len(steps)
                steps.append((_copy_col, engine._cfg((0, 0, C)), dummy, dummy, dummy, dummy))
                periods.append(period[j])
            w = "w.%d." % n
            steps.append(engine.conv_step(op, arrays[w + "filter"], arrays[w + "bias"],
                                          arrays[w + "mult"], arrays[w + "shift"], bases[j],
                                          bases[j + 1], scratch[j], k, d, C, 1, 1))
            periods.append(period[j + 1])
            cons[j] = (len(steps) - 1, 0)
            prod[j + 1] = (len(steps) - 1, 1)
        last = len(layers)
        if need[last] > 1:
            copies[last] = len(steps)
            steps.append((_copy_col, engine._cfg((0, 0, C_end)), dummy, dummy, dummy, dummy))
            periods.append(period[last])
        head_from = len(steps)
        if pool:
            # the T remaining columns at dilation D: an image of T rows and D columns
            steps.append(engine.pool_step(pool[1], bases[last], head_off, (pool[2], D, C_end),
                                          (1, 1)))
            cons[last] = (len(steps) - 1, 0)
            src = head_off
        else:
            src = bases[last]
        macs = 0       # per `every` hops
        for j, (_, op, _, _, _, _, _) in enumerate(layers):
            macs += op["options"]["channels"] * op["options"]["depth"] * (every // period[j + 1])
        for (n, op), dst in zip(head, head_outs):
            w = "w.%d." % n
            o = op["options"]
            if op["type"] == "FULLY_CONNECTED":
                steps.append(engine.conv_step(op, arrays[w + "filter"], arrays[w + "bias"],
                                              arrays[w + "mult"], arrays[w + "shift"], src, dst,
                                              None, o["positions"], 1, o["depth"], o["positions"], 1))
                macs += o["positions"] * o["channels"] * o["depth"]
            else:
                depth = tensors[op["outputs"][0]]["shape"][-1]
                n_out = engine._numel(tensors[op["outputs"][0]]["shape"])
                steps.append(engine.softmax_step(arrays[w + "exp"], src, dst, n_out // depth, depth))
            src = dst
        steps.append((engine._copy_out, engine._cfg((src, len(self.output))), self.output,
                      dummy, dummy, dummy))
        periods += [every] * (len(steps) - head_from)
        self.macs = macs // every       # average per hop

        # all step configs in one int32 array so _advance can re-point them per hop
        flat = []
        starts = []
        for st in steps:
            starts.append(len(flat))
            flat.extend(st[1])
        starts_in = len(flat)
        flat.extend(self._copy_in[1])
        self._cfgs = engine._cfg(flat)
        mv = memoryview(self._cfgs)
        plan = []
        for i, st in enumerate(steps):
            plan.append((st[0], mv[starts[i]:starts[i] + len(st[1])]) + tuple(st[2:])
                        + (periods[i],))
        self._plan = tuple(plan)
        self._in_cfg = mv[starts_in:starts_in + 2]

        def at(ref):
            return (starts_in if ref[0] < 0 else starts[ref[0]]) + ref[1]

        table = []
        for j, R in enumerate(need):
            if R == 1:
                continue
            copy = starts[copies[j]] + 1 if copies[j] is not None else 0
            table += [0, R, bases[j], cols[j], at(prod[j]), at(cons[j]), copy]
        self._rings = engine._cfg(table)
        self._n_rings = len(table) // _RING
        self._due = 0      # hops until the next wanted output

    def push(self, frame):
        """Append one int8 feature frame (width bytes); results in .output (on every `every`-th
        push). Allocates nothing."""
        arena = self.arena
        due = self._due
        _advance(self._cfgs, self._rings, self._n_rings)
        engine._copy_in(arena, self._in_cfg, frame, arena, arena, arena)
        for step in self._plan:
            if due % step[6] == 0:
                step[0](arena, step[1], step[2], step[3], step[4], step[5])
        self._due = due - 1 if due else self.every - 1

    def fill(self, frame):
        """Start as if `frame` had filled the whole window: push it `frames` times (every layer
        on every hop); the `every`-th push after this one gives the next output."""
        for _ in range(self.frames):
            self._due = 0
            self.push(frame)
        self._due = self.every - 1
