"""The `stats ...` lines of --stats and --heapcheck (parsed by tools/unixport.py), printed once
after the run, and the out-of-memory report; imported only then, so this code is not in the heap
while audio runs."""
import gc

from runtime import STAGES, WARM_BLOCKS


def report(rt, stats=False, heapcheck=False):
    """Print `stats key=value ...` lines (parsed by tools/unixport.py)."""
    frames = rt.frames or 1
    # model MACs per hop as run: streaming computes only new columns (engine.macs is per hop)
    macs = getattr(rt.engine, "macs", 0)
    if not rt.streaming:
        macs //= rt.infer_every
    print("stats frames=%d inferences=%d detections=%d audio_ms=%d infer_every=%d streaming=%d"
          " macs_per_hop=%d" % (rt.frames, rt.inferences, rt.detections,
                                rt.frames * rt.hop_ms, rt.infer_every,
                                int(rt.streaming), macs))
    if stats:
        parts = []
        whole = 0
        for i, name in enumerate(STAGES):
            stage_us = rt.ms[i] * 1000 + rt.us[i]
            whole += stage_us
            parts.append("%s=%d" % (name, stage_us // frames))
        parts.append("total=%d" % (whole // frames))
        print("stats us_per_hop " + " ".join(parts))
        # Share of real time spent computing: over 100 and a microphone drops audio.
        print("stats realtime_pct=%d" % (whole // frames * 100 // (rt.hop_ms * 1000)))
        # Longest stretch without reading audio: the I2S buffer (ibuf) must hold this much.
        print("stats max_block_us=%d" % rt.max_block_us)
        if rt.inferences:
            k = STAGES.index("infer")
            infer_us = rt.ms[k] * 1000 + rt.us[k]
            print("stats us_per_inference=%d" % (infer_us // rt.inferences))
    heap = gc.mem_alloc() + gc.mem_free()
    print("stats heap_total=%d heap_live=%d heap_peak=%d" % (heap, rt.heap_live, rt.heap_peak))
    if heapcheck:
        counted = max(0, rt.blocks - WARM_BLOCKS)
        print("stats alloc_bytes=%d alloc_blocks=%d blocks_checked=%d"
              % (rt.alloc_bytes, rt.alloc_blocks, counted))


def out_of_memory(what, err):
    """runtime._out_of_memory's message: what failed, the heap, what to do."""
    try:
        free = gc.mem_free()
        total = free + gc.mem_alloc()
        print("hark: out of memory %s (heap %d bytes, %d free after collect): the model and "
              "buffers need more RAM than this heap; use a smaller model or a board with more RAM"
              % (what, total, free), file=err)
    except MemoryError:
        print("hark: out of memory: the model and buffers need more RAM than this heap; use a "
              "smaller model or a board with more RAM", file=err)
