"""Start-up of the hark pipeline: model, engine, front end and detector (options.py has the
arguments, board profile and audio source, and is dropped before this runs; runtime.Runtime
adds the actions after dropping this module, so start-up code and actions never share the heap).

Everything here runs once, before the first sample; runtime.Runtime drops this module (and this
drops blob.py, plan.py) so their code does not sit in the heap while audio runs.
build() fills a runtime.Runtime in the order a small heap needs: the weight arrays first,
into an empty heap (big contiguous blocks), then the engine, front end and detector.
"""
import gc
import sys
from array import array

from runtime import BLOCK, STAGES


def _drop(name):
    sys.modules.pop(name, None)


def detector_config(meta, board):
    """The blob's detector defaults with the board profile's "detector" overrides applied
    (plus "infer_every": run the model every N hops, default 1)."""
    cfg = dict(meta.get("detector") or {})
    over = board.get("detector") or {}
    over = over.get("overrides", over)
    thresholds = dict(cfg.get("thresholds") or {})
    thresholds.update(over.get("thresholds") or {})
    cfg.update(over)
    cfg["thresholds"] = thresholds
    return cfg


def _load(model, skip):
    gc.collect()
    try:
        from model import load      # the weights frozen into flash (firmware/frozen/model.py)
    except ImportError:
        from blob import load
    b = load(model, skip=skip)
    del load
    _drop("model")
    _drop("blob")
    # collect at each stage: the next stage's buffers then fill the holes the last one left,
    # before small objects scatter into them (the heap never compacts)
    gc.collect()
    return b


def build(rt, model, board, stream=True, path=""):
    """Load the model and allocate every buffer of Runtime `rt` (its actions come after this
    module is dropped), then warm it up. path: the enrolled-words file (enroll.py), "" for
    none; rt.matcher (match.py) then matches its words, None if there are none."""
    b = _load(model, ("p.w.",) if stream else ())
    # the front end's two large buffers (1 KB, 2 KB) now, while the heap above the weights is one
    # free block: later they would need holes that large among start-up's leftovers
    bufs = (bytearray(2 * 512), bytearray(8 * 257))    # frontend.FrontEnd checks the sizes
    meta = b.meta
    cfg = detector_config(meta, board)
    # the profile's grammar, or the one the model was trained for (a wake word's blob has it)
    grammar = board.get("grammar") or meta.get("grammar")
    rt.infer_every = max(1, int(cfg.get("infer_every", 1)))
    rt.streaming = False
    if stream:
        try:
            import streaming
        except ImportError:     # firmware built without it: windowed
            streaming = None
        if streaming and streaming.reason(b) is None:
            rt.engine = streaming.StreamingInterpreter(b, rt.infer_every)
            rt.streaming = True
    if not rt.streaming:
        if stream:      # loaded without the windowed plan, which it needs after all
            del b
            b = _load(model, ())
            meta = b.meta
        import engine
        rt.engine = engine.Interpreter(b)
    _drop("plan")
    gc.collect()
    import frontend
    arrays = b.arrays
    feat = meta.get("features") or {}
    meta = {"frontend": meta.get("frontend"),   # all the front end needs (not the normalisation:
            "features": feat and {k: feat.get(k)   # its floats would pin holes the front end needs)
                                  for k in ("hop_length", "n_mfcc", "sample_rate")}}
    del feat
    del b
    gc.collect()
    rt.fe = frontend.FrontEnd(meta, arrays, bufs)
    feat = meta.get("features") or {}
    rate = feat.get("sample_rate", 16000)
    n_fft = meta["frontend"]["n_fft"] if meta["frontend"] else 512   # the one it checked
    rt.hop_ms = feat.get("hop_length", 320) * 1000 // rate
    rt.width = feat.get("n_mfcc", 10)
    del arrays, meta, feat, bufs
    gc.collect()
    eng = rt.engine
    if rt.streaming:
        rt.total = eng.frames * eng.width
        if eng.width != rt.width:
            raise ValueError("model frames of %d features, front end frames of %d"
                             % (eng.width, rt.width))
    else:
        rt.total = len(eng.input)
    if rt.total % rt.width:
        raise ValueError("model input of %d bytes is not whole frames of %d features"
                         % (rt.total, rt.width))
    from detector import Detector
    rt.labels = eng.labels
    rt.matcher = None
    words = None
    if path:
        import os
        try:
            words = os.stat(path)
        except OSError:
            pass
    if words:       # enrolled.py and match.py are only imported when the file exists
        import enrolled
        words = enrolled.load(path, model, rt.width, eng.labels, sys.stderr)
        del enrolled
        _drop("enrolled")
        _drop("blob")
        rt.labels = eng.labels + [w[0] for w in words]
    rt.detector = Detector(rt.labels, cfg, eng.output_scale, eng.output_zero_point,
                           rt.hop_ms * rt.infer_every, grammar, len(eng.labels))
    if words:
        import match
        rt.matcher = match.Matcher(words, rt.detector, len(eng.labels), rt.width)
    rt.buf = buf = array("h", range(BLOCK))    # sized once, no temporary; then silence
    for i in range(BLOCK):
        buf[i] = 0
    rt.us = array("i", bytes(4 * len(STAGES)))
    rt.ms = array("i", bytes(4 * len(STAGES)))
    rt.frames = 0
    rt.inferences = 0
    rt.detections = 0
    rt.alloc_bytes = 0
    rt.alloc_blocks = 0
    rt.blocks = 0
    rt.max_block_us = 0
    rt.heap_live = 0
    rt.heap_peak = 0
    _warm_up(rt, n_fft)


def _warm_up(rt, n_fft):
    """Feed one frame (n_fft samples) of digital silence and fill the whole input window with
    it. (n_fft is not kept in rt: a 24th attribute would grow its dict at the end of start-up.)"""
    buf = rt.buf
    need = n_fft
    while not rt.fe.ready:
        if need <= 0:
            raise ValueError("front end produced no frame from %d samples" % n_fft)
        m = min(need, BLOCK)
        rt.fe.push(buf, 0, m)
        need -= m
    if rt.streaming:
        rt.engine.fill(rt.fe.frame)
    else:
        from runtime import _push_frame
        for _ in range(rt.total // rt.width):
            _push_frame(rt.engine.input, rt.fe.frame, rt.total, rt.width)
