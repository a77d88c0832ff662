"""The hark pipeline on the device: audio -> features -> model -> detector -> actions.

main.py calls main(argv). On a board argv is empty: config.json (the board
profile) and model.hark from the filesystem, audio from the profile's source.
On the unix port:

    micropython main.py --model M.hark --board boards/unix.json --wav clip.wav
                        [--stdin] [--pad-ms 1000] [--stats] [--heapcheck] [--no-stream]

Detections print as `t=1.23s yes 0.93` (audio time, label, probability).
Everything is allocated before the loop; the loop itself allocates nothing
(--heapcheck measures that, --stats prints per-stage time and heap use).
Models that stream (streaming.reason(blob) is None: the tcn family) run incrementally,
one new column per layer per hop, with outputs identical to re-running the window;
--no-stream forces the windowed engine.
options.py (arguments, profile, source) and startup.py (the pipeline) run once and are dropped
before the first sample; this module holds only what runs while audio flows.
"""
import gc
import sys

import micropython
from micropython import const

BLOCK = const(320)         # samples per read: one 20 ms hop
WARM_BLOCKS = const(50)   # first second: one-off allocations (caches, first calls) allowed
# Where start-up and out-of-memory errors go. `hark monitor` points it at stdout: the unix
# port's stderr does not pass through the pseudo-terminal the monitor reads.
err = sys.stderr
STAGES = ("read", "frontend", "window", "infer", "detect", "actions")
_READ = const(0)
_FRONTEND = const(1)
_WINDOW = const(2)
_INFER = const(3)
_DETECT = const(4)
_ACTIONS = const(5)


@micropython.viper
def _push_frame(win, frame, total: int, width: int):
    """Drop the oldest frame of the model input window and append `frame`."""
    w = ptr8(win)
    f = ptr8(frame)
    keep = total - width
    i = 0
    while i < keep:
        w[i] = w[i + width]
        i += 1
    j = 0
    while j < width:
        w[keep + j] = f[j]
        j += 1


def _acc(us, ms, k, d):
    """Add d µs to stage k; carry whole ms out so the counters stay small ints."""
    v = us[k] + d
    if v >= 1000000:
        ms[k] += v // 1000
        v %= 1000
    us[k] = v


class Runtime:
    """Owns every buffer of the pipeline (startup.build allocates them); run() streams a
    source through it."""

    def __init__(self, model, board, printer=True, stream=True, enrolled=""):
        import startup
        startup.build(self, model, board, stream, enrolled)
        del startup
        sys.modules.pop("startup", None)    # start-up code: not needed while audio runs
        gc.collect()
        # the actions last, into the heap start-up code left: the peak stays lower
        from actions import from_profile
        self.actions = from_profile(board.get("actions"), self.labels, printer)

    def run(self, source, stats=False, heapcheck=False):
        """Stream source to its end (forever for a microphone)."""
        from time import ticks_diff, ticks_us
        fe = self.fe
        eng = self.engine
        det = self.detector
        acts = self.actions
        names = self.labels
        match = self.matcher        # enrolled words (match.py), None if there are none
        stream = self.streaming
        win = None if stream else eng.input
        out = eng.output
        buf = self.buf
        us = self.us
        ms = self.ms
        total = self.total
        width = self.width
        hop_ms = self.hop_ms
        infer_every = self.infer_every
        measure = stats or heapcheck
        gc.collect()
        self.heap_live = gc.mem_alloc()     # the whole pipeline, source included
        if self.heap_live > self.heap_peak:
            self.heap_peak = self.heap_live
        if heapcheck:
            gc.disable()
        t = 0
        k = 0
        m0 = 0
        t0 = 0
        tb = 0
        while True:
            if measure:
                m0 = gc.mem_alloc()
                t0 = ticks_us()
            n = source.readinto(buf)
            if not n:
                break
            if stats:
                t1 = ticks_us()
                _acc(us, ms, _READ, ticks_diff(t1, t0))
                t0 = t1
                tb = t1
            pos = 0
            while pos < n:
                pos = fe.push(buf, pos, n)
                if not fe.ready:
                    continue
                if stats:
                    t1 = ticks_us()
                    _acc(us, ms, _FRONTEND, ticks_diff(t1, t0))
                    t0 = t1
                self.frames += 1
                if stream:
                    eng.push(fe.frame)     # the model's work for this hop (output every N-th)
                else:
                    _push_frame(win, fe.frame, total, width)
                t = (t + hop_ms) & 0x1FFFFFFF
                k += 1
                if stats:
                    t1 = ticks_us()
                    _acc(us, ms, _INFER if stream else _WINDOW, ticks_diff(t1, t0))
                    t0 = t1
                if k >= infer_every:
                    k = 0
                    if not stream:
                        eng.invoke()
                        if stats:
                            t1 = ticks_us()
                            _acc(us, ms, _INFER, ticks_diff(t1, t0))
                            t0 = t1
                    self.inferences += 1
                    label = det.update(out, t)
                    if stats:
                        t1 = ticks_us()
                        _acc(us, ms, _DETECT, ticks_diff(t1, t0))
                        t0 = t1
                    if label >= 0:
                        self.detections += 1
                        acts.fire(names[label], det.last_pct, t)
                if match is not None:       # enrolled words: every hop (their DTW)
                    if match.update(fe.frame, t) >= 0:
                        self.detections += 1
                        acts.fire(names[det.last_label], det.last_pct, t)
                    if stats:
                        t1 = ticks_us()
                        _acc(us, ms, _DETECT, ticks_diff(t1, t0))
                        t0 = t1
                acts.poll(t)
                if stats:
                    t1 = ticks_us()
                    _acc(us, ms, _ACTIONS, ticks_diff(t1, t0))
                    t0 = t1
            if stats:
                t1 = ticks_us()
                _acc(us, ms, _FRONTEND, ticks_diff(t1, t0))
                if self.blocks > WARM_BLOCKS and ticks_diff(t1, tb) > self.max_block_us:
                    self.max_block_us = ticks_diff(t1, tb)
            if measure:
                self.blocks += 1
                m1 = gc.mem_alloc()
                if m1 > self.heap_peak:
                    self.heap_peak = m1
                if heapcheck:
                    if m1 > m0 and self.blocks > WARM_BLOCKS:
                        self.alloc_bytes += m1 - m0
                        self.alloc_blocks += 1
                    if gc.mem_free() < 8192:
                        gc.collect()
        if heapcheck:
            gc.enable()


def _out_of_memory(what):
    """Report a MemoryError; called after the except block with the pipeline let go of, so the
    half-built objects its traceback held are collectable and the report (stats.py: its message
    is not in the heap while audio runs) finds room. If even that fails, a short one is printed."""
    gc.collect()
    try:
        from stats import out_of_memory
        out_of_memory(what, err)
    except MemoryError:
        print("hark: out of memory", what, "(use a smaller model or a board with more RAM)",
              file=err)


def main(argv):
    """Exit codes: 0 ok, 2 bad arguments or files, 3 out of memory."""
    out_of_memory = False   # reported outside the except blocks (see _out_of_memory)
    source = None
    try:
        import options
        opts = options.parse(argv)
        if opts is None:                    # enroll mode: its options are parsed there
            del options
            sys.modules.pop("options", None)
            import enroll
            return enroll.main(argv)
        board = options.load_board(opts["board"])
        options.set_clock(board.get("clock_hz"))
        # the source first: the I2S driver's buffer (8 KB on a pyboard) then sits at the start
        # of an empty heap instead of needing a hole that large after the model is loaded
        source = options.make_source(board, opts["wav"], opts["stdin"], opts["pad_ms"])
        del options
        sys.modules.pop("options", None)    # start-up code: not needed while audio runs
        rt = Runtime(opts["model"], board, stream=not opts["no_stream"],
                     enrolled=opts["enrolled"])
        del board
    except MemoryError:
        out_of_memory = True
    except (ValueError, RuntimeError, OSError) as exc:
        if source:
            source.close()
        print("hark: error:", exc, file=err)
        return 2
    if out_of_memory:
        if source:
            source.close()
        source = None
        _out_of_memory("while loading the model")
        return 3
    try:
        rt.run(source, opts["stats"], opts["heapcheck"])
    except MemoryError:
        out_of_memory = True
    finally:
        source.close()
    if out_of_memory:
        rt = None
        _out_of_memory("while running")
        return 3
    if opts["stats"] or opts["heapcheck"]:
        from stats import report    # only now: its code is not in the heap while audio runs
        report(rt, opts["stats"], opts["heapcheck"])
    return 0
