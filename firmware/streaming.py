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
# engine's own viper kernels (their requantisation included) run unchanged
# with OH = OW = 1. Each ring is R columns in a row: every hop it shifts down one column and the
# producer writes the newest at the top, so the last R columns are always one contiguous run.
# (The exporter lays rings out twice over, 2R columns written twice; plan.py stores them once:
# half the arena, for a copy of columns a hop.)
#
# Streamable: the graph's time axis is dim 1; every op until the pooling is CONV_2D or
# DEPTHWISE_CONV_2D with kernel (k, 1), VALID, on a width-1 input, and (in_len - k) % stride == 0
# (so a strided layer's newest output ends at the newest input); then AVERAGE/MAX_POOL_2D over
# all remaining time (or a single remaining column), then FULLY_CONNECTED/SOFTMAX/RESHAPE.
# `reason(blob)` says why another model is not (dscnn, tiny_conv: 2-D kernels, SAME padding).
# The exporter (training/plan.py) lays out the rings and the per-hop plan; plan.py points the
# calls at the blob's arrays at start-up; this module only runs them.
import micropython

import engine

_RING = 7   # ring table fields (int32): write index (unused here), R, base, column bytes,
            # producer cfg index, consumer cfg index, 1 + cfg index of the column copy (unused)


@micropython.viper
def _advance(arena: ptr8, rings: ptr32, n: int):
    # Drop every ring's oldest column: its other R - 1 columns move down one, and its producer
    # then writes the newest at the top (words when the ring and its columns are word-aligned)
    for i in range(n):
        r = ptr32(int(rings) + i * 28)      # _RING fields of 4 bytes
        C = r[3]
        base = int(arena) + r[2]
        keep = (r[1] - 1) * C
        if (base | C) & 3 == 0:
            # four words a pass through stepping pointers (the source is C bytes ahead: a
            # forward copy reads each word before it is overwritten)
            d = ptr32(base)
            end = base + keep
            while int(d) < end - 12:
                s = ptr32(int(d) + C)
                d[0] = s[0]
                d[1] = s[1]
                d[2] = s[2]
                d[3] = s[3]
                d = ptr32(int(d) + 16)
            while int(d) < end:
                s = ptr32(int(d) + C)
                d[0] = s[0]
                d = ptr32(int(d) + 4)
        else:
            d8 = ptr8(base)
            s8 = ptr8(base + C)
            j = 0
            while j < keep:
                d8[j] = s8[j]
                j += 1


def reason(blob):
    """None when the blob's model streams, else why not (the runtime then runs it windowed).
    The exporter decided it (training/plan.py) and wrote the plan or the reason."""
    s = blob.meta["model"].get("stream")
    if isinstance(s, dict):
        return None
    return s or "the blob has no streaming plan; re-export the model with `hark export`"


class StreamingInterpreter:
    """push(frame) one int8 feature frame per hop; .output (int8 bytes) then equals what
    engine.Interpreter gives on the window of the last `frames` frames. fill(frame) starts the
    stream as if that frame had filled the whole window. Allocates nothing per push.

    every=N: the output is only wanted every N-th push (the runtime's infer_every; the first
    N pushes after fill()). A layer whose columns are read at a dilation sharing a factor with
    N then runs only on the hops that feed a wanted output: e.g. N=2 halves the work of every
    layer after a stride-2 layer. .output is valid on those N-th pushes only.
    plan.py sets it up (.frames, .width, .labels, .macs per hop, .window_macs, rings, plan)."""

    def __init__(self, blob, every=1):
        import plan
        plan.streaming(self, blob, every)

    def push(self, frame):
        """Append one int8 feature frame (width bytes); results in .output (on every `every`-th
        push). Allocates nothing."""
        arena = self.arena
        due = self._due
        _advance(arena, self._rings, self._n_rings)
        engine._copy_in(arena, frame, self._in_cfg, arena, arena, arena)
        for kernel, cfg, a, b, c, d, period in self._plan:
            if due % period == 0:
                kernel(arena, a, cfg, b, c, d)
        self._due = due - 1 if due else self.every - 1

    def fill(self, frame):
        """Start as if `frame` had filled the whole window: push it `frames` times (every layer
        on every hop); the `every`-th push after this one gives the next output."""
        for _ in range(self.frames):
            self._due = 0
            self.push(frame)
        self._due = self.every - 1
