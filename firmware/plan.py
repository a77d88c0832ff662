# hark start-up: turns the blob's plan records (built on the host by training/plan.py, blob format
# 3) into the preplanned kernel calls of engine.Interpreter and streaming.StreamingInterpreter.
# It only points at arrays the loader already read: no graph walk, no offsets worked out here,
# so start-up needs little more heap than the weights. The runtime drops this module afterwards.
#
# p.w.* (whole window) and p.s.* (streaming): `steps`, 9 int32 per kernel call (kernel, cfg start,
# cfg length, period, MACs per call, byte offsets in the weights array `w` of its 4 array
# arguments or -1); `cfg`, the calls' configs end to end; p.s.rings, the ring table
# streaming._advance walks.
from micropython import const

import engine

_STEP = const(9)
_EXTRA = (5, 7)    # mean, add: the kernels in engine_extra.py
_COPY_COL = const(8)
# per kernel: how many leading cfg fields are arena offsets (-1: never in a streaming plan)
_OFFSETS = (1, 1, 3, 3, 2, -1, 2, -1, 0)
_FIX = "re-export the model with `hark export`"


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def _kernels(steps):
    """The kernels by number (training/plan.py KERNELS); engine_extra only if the plan calls it.
    copy_col (the second copy of a ring column) has none: rings are stored once here."""
    x = None
    for s in range(0, len(steps), _STEP):
        if steps[s] in _EXTRA:
            import engine_extra as x
            break
    return (engine._copy_in, engine._copy_out, engine._conv, engine._dwconv, engine._pool,
            x and x._mean, engine._softmax, x and x._add)


def _steps(it, blob, prefix, every):
    """(plan, MACs per hop at one output every `every` hops) of records `prefix`; the plan is a
    tuple of (kernel, cfg view, 4 array arguments, period in hops)."""
    arrays = blob.arrays
    steps = arrays.get(prefix + "steps")
    cfg = arrays.get(prefix + "cfg")
    w = arrays.get("w")
    if steps is None or cfg is None or w is None or len(steps) % _STEP:
        raise ValueError("the blob has no usable engine plan (%ssteps, %scfg, w); %s"
                         % (prefix, prefix, _FIX))
    for v in cfg:
        if v < 0:   # the kernels read cfg as uint32 on 64-bit ports
            raise ValueError("negative engine config value %d; %s" % (v, _FIX))
    kernels = _kernels(steps)
    mv = memoryview(cfg)
    wv = memoryview(w)
    dummy = bytearray(4)
    plan = []
    macs = 0
    for s in range(0, len(steps), _STEP):
        k = steps[s]
        at = steps[s + 1]
        end = at + steps[s + 2]
        if k == _COPY_COL and prefix == "p.s.":
            continue    # rings stored once: no second copy (_rings_once)
        if not 0 <= k < len(kernels) or kernels[k] is None:
            raise ValueError("plan step %d has kernel %d, which this firmware does not have "
                             "(it has %d); update the firmware" % (s // _STEP, k, len(kernels)))
        if not 0 <= at <= end <= len(cfg):
            raise ValueError("plan step %d reads config %d..%d of %d; %s"
                             % (s // _STEP, at, end, len(cfg), _FIX))
        for i in range(4):
            if steps[s + 5 + i] >= len(w):
                raise ValueError("plan step %d reads weights at %d of %d; %s"
                                 % (s // _STEP, steps[s + 5 + i], len(w), _FIX))
        # no list of the arguments: its garbage would leave holes between the plan's tuples
        a = it.output if k == 1 else it.input if k == 0 else _arg(wv, steps[s + 5], dummy)
        period = _gcd(every, steps[s + 3])
        macs += steps[s + 4] * (every // period)
        plan.append((kernels[k], mv[at:end], a, _arg(wv, steps[s + 6], dummy),
                     _arg(wv, steps[s + 7], dummy), _arg(wv, steps[s + 8], dummy), period))
    del arrays[prefix + "steps"]    # read once: its heap is free for what start-up makes next
    return tuple(plan), macs // every


def _arg(wv, a, dummy):
    return wv[a:] if a >= 0 else dummy


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _common(it, model, labels):
    it.labels = labels
    it.output = bytearray(_numel(model["output"]["shape"]))
    it.output_scale = model["output"]["scale"]
    it.output_zero_point = model["output"]["zero_point"]
    it.embedding = None


def _embedding(it, model, o):
    """it.embedding: a view of the arena bytes at offset o, the last dense layer's input (offset
    form, q + 128) as they stand after an inference; None if the blob marks none."""
    e = model.get("embedding")
    if e and o is not None:
        if not 0 <= o <= len(it.arena) - e["size"]:
            raise ValueError("the embedding runs past the arena; " + _FIX)
        it.embedding = memoryview(it.arena)[o:o + e["size"]]


def windowed(it, blob):
    """Set up engine.Interpreter `it`: arena, input/output buffers and the plan of kernel calls."""
    model = blob.meta["model"]
    _common(it, model, blob.meta["labels"])
    it.arena = bytearray(model["arena_bytes"])
    it.input = bytearray(_numel(model["input"]["shape"]))
    it._plan = _steps(it, blob, "p.w.", 1)[0]
    it.macs = model["macs"]
    _embedding(it, model, (model.get("embedding") or {}).get("offset"))


def _rings_once(steps, cfg, rings, size, o=None):
    """The exporter stores each ring twice over (2R columns, written twice, so its last R are
    contiguous); here each ring is stored once, R columns that _advance shifts down one column a
    hop. Moves every arena offset in `cfg` down past the bytes saved (a multiple of 4 per ring:
    every buffer keeps its alignment), points each ring's producer at its top column and its
    consumer at its base for good; returns (the arena's size, arena offset `o` moved)."""
    ends = []       # (old end of a ring, bytes saved up to there)
    saved = 0
    for i in range(0, len(rings), 7):
        saved += (rings[i + 1] * rings[i + 3]) & ~3
        ends.append((rings[i + 2] + 2 * rings[i + 1] * rings[i + 3], saved))

    def moved(o):
        d = 0
        for end, upto in ends:
            if o >= end:
                d = upto
        return o - d

    for s in range(0, len(steps), _STEP):
        k = steps[s]
        n = _OFFSETS[k] if 0 <= k < len(_OFFSETS) else -1
        if n < 0:
            raise ValueError("streaming plan step %d has kernel %d; %s" % (s // _STEP, k, _FIX))
        at = steps[s + 1]
        for f in range(at, at + min(n, steps[s + 2])):
            cfg[f] = moved(cfg[f])
    size -= saved
    for i in range(0, len(rings), 7):
        base = moved(rings[i + 2])
        if base < 0 or base + rings[i + 1] * rings[i + 3] > size:   # _advance shifts it unchecked
            raise ValueError("streaming ring %d runs past the arena; %s" % (i // 7, _FIX))
        rings[i + 2] = base
        cfg[rings[i + 4]] = base + (rings[i + 1] - 1) * rings[i + 3]
        cfg[rings[i + 5]] = base
    return size, None if o is None else moved(o)


def streaming(it, blob, every):
    """Set up streaming.StreamingInterpreter `it`: rings in one arena, the per-hop plan and the
    ring table streaming._advance shifts every hop."""
    model = blob.meta["model"]
    s = model.get("stream")
    rings = blob.arrays.get("p.s.rings")
    if not isinstance(s, dict) or rings is None or len(rings) % 7:
        raise ValueError("the blob has no usable streaming plan; " + _FIX)
    _common(it, model, blob.meta["labels"])
    it.frames = s["frames"]
    it.width = s["width"]
    it.window_macs = model["macs"]
    it.every = every = max(1, int(every))
    cfgs = blob.arrays["p.s.cfg"]
    for i in range(0, len(rings), 7):
        if max(rings[i + 4], rings[i + 5]) >= len(cfgs):
            raise ValueError("streaming ring %d points past the plan's config; %s" % (i // 7, _FIX))
    size, emb = _rings_once(blob.arrays["p.s.steps"], cfgs, rings, s["arena_bytes"],
                            s.get("embedding"))
    import gc   # _rings_once's garbage (ring ends, closure) out of the arena's way
    gc.collect()
    it.arena = bytearray(size)
    _embedding(it, model, emb)
    it._plan, it.macs = _steps(it, blob, "p.s.", every)
    at = s["input_cfg"]
    it._in_cfg = memoryview(cfgs)[at:at + 2]
    it._rings = rings
    it._n_rings = len(rings) // 7
    it._due = 0      # hops until the next wanted output
