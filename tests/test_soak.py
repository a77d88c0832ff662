"""Soak: one hour of speech over noise through the real firmware in the unix port.

A 120 s generated stream (training/stream.py: held-out command words, non-command words,
noise from near-silent to loud) is played 30 times back to back on stdin. The heap must stay
flat (nothing allocated in any block after warm-up, peak equal to the live heap after
loading) and, the audio being periodic, every repetition after the first must give the same
detections at the same offsets: no drift, no state that builds up over an hour.

The shipped default model runs as the board runs it: streaming (one new column per layer each
hop, firmware/streaming.py), inference every 20 ms hop, so an hour takes 1-3 min here. A
full-window model at every hop (e.g. dscnn: ~13 ms per hop in the unix port) would need
10+ min for an hour; `hark bench` measures those on a 10 min stream instead.
"""
import numpy as np
import pytest

from hark import MODELS_DIR, boards
from hark.training.stream import make_stream
from hark.unixport import run_firmware

pytestmark = pytest.mark.slow

LOOP_S, REPS = 120, 30


def test_one_hour_heap_flat_and_detections_periodic(shared_data):
    model = MODELS_DIR / "default.hark"
    if not model.exists():
        pytest.skip("no models/default.hark")
    loop, events = make_stream(shared_data, LOOP_S, seed=21, unknown_dir=None)
    board = boards.load("unix")
    run = run_firmware(model, board, pcm=np.tile(loop, REPS).tobytes(), heapcheck=True,
                       timeout=900)
    s = run.stats
    hops = LOOP_S * REPS * 50
    assert s["frames"] == hops and s["inferences"] == hops
    assert s["alloc_bytes"] == 0 and s["alloc_blocks"] == 0, s
    assert s["blocks_checked"] >= hops - 100
    assert s["heap_peak"] - s["heap_live"] < 1024, s
    per_rep = [[] for _ in range(REPS)]
    for d in run.detections:
        rep = int(d.time_s // LOOP_S)
        per_rep[rep].append((round(d.time_s - rep * LOOP_S, 2), d.label))
    assert per_rep[1], "nothing detected in a stream full of command words"
    for rep in range(2, REPS):
        assert per_rep[rep] == per_rep[1], f"repetition {rep} differs: {per_rep[rep]} vs {per_rep[1]}"
    targets = sum(e["target"] for e in events)
    print(f"soak: {hops} hops, {len(run.detections)} detections in 1 h ({len(per_rep[1])} per "
          f"{LOOP_S} s loop with {targets} command words), heap live {s['heap_live']} "
          f"peak {s['heap_peak']}, alloc {s['alloc_bytes']} B, streaming {s.get('streaming')}")
