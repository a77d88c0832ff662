"""Soak: one hour of speech over noise through the real firmware in the unix port.

A 120 s generated stream (training/stream.py: held-out command words, non-command words,
noise from near-silent to loud) is played 30 times back to back on stdin. The heap must stay
flat (nothing allocated in any block after warm-up, peak equal to the live heap after
loading) and, the audio being periodic, every repetition after the first must give the same
detections at the same offsets: no drift, no state that builds up over an hour.

Speed: the default model re-runs its full 1 s window (566 k MACs) and on this 2-core shared
machine an hour at one inference per 20 ms hop takes 5-10 min, so here the model runs every
8th hop (infer_every=8, 6 inferences/s; front end, window and detector still run every hop).
The every-hop speed is measured by `hark bench`.
"""
import numpy as np
import pytest

from hark import MODELS_DIR, boards
from hark.training.stream import make_stream
from hark.unixport import run_firmware

pytestmark = pytest.mark.slow

LOOP_S, REPS, EVERY = 120, 30, 8


def test_one_hour_heap_flat_and_detections_periodic(shared_data, tmp_path):
    from hark.training import blob as host_blob
    from hark.training import export
    from hark.training.features import FeatureSpec, Normalisation

    shipped = MODELS_DIR / "default.hark"
    if not shipped.exists():
        pytest.skip("no models/default.hark")
    meta, _ = host_blob.read_blob(shipped)
    model = tmp_path / "default.hark"   # current front-end tables, shipped int8 graph
    export.write_model_blob(shipped.with_suffix(".tflite").read_bytes(),
                            FeatureSpec.from_dict(meta["features"]),
                            Normalisation.from_dict(meta["features"]["normalisation"]),
                            meta["labels"], model, meta["name"], meta["detector"], meta.get("family"))
    loop, events = make_stream(shared_data, LOOP_S, seed=21, unknown_dir=None)
    assert LOOP_S * 50 % EVERY == 0   # inference phase repeats with the audio
    board = dict(boards.load("unix"), detector={"infer_every": EVERY})
    run = run_firmware(model, board, pcm=np.tile(loop, REPS).tobytes(), stats=True, heapcheck=True,
                       timeout=900)
    s = run.stats
    hops = LOOP_S * REPS * 50
    assert s["frames"] == hops and s["inferences"] == hops // EVERY
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
          f"peak {s['heap_peak']}, alloc {s['alloc_bytes']} B, us/hop {s['us_per_hop.total']}")
