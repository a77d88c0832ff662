"""TFLite flatbuffer -> the blob's "model" section: graph, engine-ready arrays, arena plan.

Everything the device needs that TFLite Micro computes at Prepare time is computed here, in the
same arithmetic (double/float32 exactly where TFLM uses them), so firmware/engine.py only runs
integer kernels.

Engine conventions (see firmware/engine.py):
- activations live in the arena as uint8 u = q + 128 ("offset form"); zero points likewise
  appear as zu = zero_point + 128, clamp bounds as act + 128.
- weights are stored as uint8 w' = w + 128, so a MAC is a plain unsigned product;
  conv/FC/depthwise accumulate sum(u*w') - 128*sum(u) + bias_folded, where
  bias_folded = bias - zu*sum(w') + 128*zu*K equals TFLM's sum((q - zp)*w) + bias.
- conv filters keep TFLite's [Cout][kh][kw][Cin] layout; depthwise filters are stored
  [C][kh][kw]; FC filters [Cout][K].
"""
import math

import numpy as np

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
                 "MEAN", "RESHAPE", "SOFTMAX", "ADD")
ACTIVATIONS = {0: "NONE", 1: "RELU", 3: "RELU6"}


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    return schema


def round_away(x: float) -> int:
    """std::round / TfLiteRound: half away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(d: float):
    """TFLite QuantizeMultiplier (double rounding build): d ~= m * 2^(shift-31), m in [2^30, 2^31)."""
    if d == 0.0:
        return 0, 0
    q, shift = math.frexp(d)
    q_fixed = round_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def activation_range(act: str, scale, zero_point: int):
    """CalculateActivationRangeQuantized for int8: bounds quantised in float32 like TFLM."""
    def quant(f):
        return zero_point + round_away(float(np.float32(f) / np.float32(scale)))
    lo, hi = -128, 127
    if act in ("RELU", "RELU6"):
        lo = max(lo, quant(0.0))
    if act == "RELU6":
        hi = min(hi, quant(6.0))
    return lo, hi


# --- exact gemmlowp fixed point (SOFTMAX tables), arbitrary precision ints standing in for int32 ---

def _srdhm(a: int, b: int) -> int:
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    return -((-v) >> 31) if v < 0 else v >> 31   # C division truncates toward zero


def _rdbp(x: int, e: int) -> int:
    mask = (1 << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > threshold else 0)


def _sat_shl(x: int, e: int) -> int:
    threshold = (1 << (31 - e)) - 1
    if x > threshold:
        return (1 << 31) - 1
    if x < -threshold:
        return -(1 << 31)
    return x << e


def _exp_on_interval(a: int) -> int:
    """gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31 in and out."""
    x = a + (1 << 28)
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _rdbp(x4, 2)
    poly = _rdbp(_srdhm(x4_over_4 + x3, 715827883) + x2, 1)
    return 1895147668 + _srdhm(1895147668, x + poly)


def exp_on_negative_values(a: int, integer_bits: int = 5) -> int:
    """gemmlowp exp_on_negative_values: Q(integer_bits) input <= 0, Q0.31 output."""
    frac = 31 - integer_bits
    quarter = 1 << (frac - 2)
    a_mod = (a & (quarter - 1)) - quarter
    result = _exp_on_interval(_sat_shl(a_mod, integer_bits))
    remainder = a_mod - a
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                           (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent and remainder & (1 << (frac + exponent)):
            result = _srdhm(result, mult)
    if a == 0:
        result = (1 << 31) - 1
    return result


def softmax_params(input_scale, beta=1.0):
    """TFLM CalculateSoftmaxParams for int8: input_multiplier, input_left_shift, diff_min."""
    real = min(float(beta) * float(np.float32(input_scale)) * (1 << 26), (1 << 31) - 1.0)
    mult, left_shift = quantize_multiplier(real)
    radius = math.floor(1.0 * ((1 << 5) - 1) * (1 << 26) / (1 << left_shift))
    return mult, left_shift, -radius


def softmax_exp_table(mult: int, left_shift: int, diff_min: int) -> np.ndarray:
    """exp(diff) in Q0.31 for diff = 0, -1, ..., -255 (index -diff); 0 where diff < diff_min."""
    table = np.zeros(256, np.int64)
    for k in range(256):
        d = -k
        if d >= diff_min:
            table[k] = exp_on_negative_values(_srdhm(d * (1 << left_shift), mult))
    return table.astype(np.int32)


def mean_multiplier(count: int, in_scale, out_scale):
    """TFLite reference QuantizedMeanOrSum: the 1/count division folded into the multiplier."""
    mult, shift = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    n_shift = min(count.bit_length() - 1, 32, 31 + shift)
    return int((mult << n_shift) // count), shift - n_shift


def _same_pad(in_size, out_size, k, s):
    return max((out_size - 1) * s + k - in_size, 0) // 2


def _builtin_names(schema):
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def editable(tflite: bytes):
    """(object-API model, its one subgraph, each operator's builtin name or "?") of a
    flatbuffer: what from_tflite reads, and what export and embedding edit before `repacked`."""
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytes(tflite), 0))
    if len(model.subgraphs) != 1:
        raise ValueError(f"model has {len(model.subgraphs)} subgraphs; the engine runs exactly one")
    names = _builtin_names(schema)
    sg = model.subgraphs[0]
    kinds = [names.get(max(model.operatorCodes[op.opcodeIndex].builtinCode,
                           model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode), "?")
             for op in sg.operators]
    return model, sg, kinds


def repacked(model, size_hint: int) -> bytes:
    """An edited object-API model as TFLite flatbuffer bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def from_tflite(tflite_bytes: bytes):
    """Parse a full-int8 TFLite model; returns (model_meta, arrays) for the blob."""
    schema = _schema()
    model, sg, kinds = editable(tflite_bytes)

    def const(i):
        t = sg.tensors[i]
        data = model.buffers[t.buffer].data
        if data is None:
            return None
        dt = {schema.TensorType.INT8: np.int8, schema.TensorType.INT32: np.int32}[t.type]
        return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dt).reshape(
            [int(d) for d in t.shape])

    def qparams(i):
        q = sg.tensors[i].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            raise ValueError(f"tensor {sg.tensors[i].name!r} is not quantised; convert with "
                             "training/convert.py (full int8)")
        return np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.int64)

    # activation tensors: everything that is not a constant buffer
    act_ids = {}
    tensors = []

    def act(i):
        if i not in act_ids:
            t = sg.tensors[i]
            if t.type != schema.TensorType.INT8:
                raise ValueError(f"tensor {t.name!r} is not int8; the engine is int8 only")
            scale, zp = qparams(i)
            act_ids[i] = len(tensors)
            # no tensor names: TFLite's fused names cost kilobytes of device heap
            tensors.append({"shape": [int(d) for d in t.shape], "dtype": "int8",
                            "scale": float(scale[0]), "zero_point": int(zp[0])})
        return act_ids[i]

    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        raise ValueError("the engine runs models with exactly one input and one output")
    graph_input = act(sg.inputs[0])
    ops, arrays = [], {}
    params = macs = 0
    alias = {}          # RESHAPE output -> input tensor (same bytes)
    for n, (op, name) in enumerate(zip(sg.operators, kinds)):
        if name not in SUPPORTED_OPS:
            raise ValueError(f"op {n} is {name}, which the hark engine does not support; "
                             f"supported ops: {', '.join(SUPPORTED_OPS)}")
        opt = op.builtinOptions
        x = op.inputs[0]
        y = op.outputs[0]
        xi, yi = act(x), act(y)
        xt, yt = tensors[xi], tensors[yi]
        in_zp, out_zp = xt["zero_point"], yt["zero_point"]
        entry = {"type": name, "inputs": [xi], "outputs": [yi], "options": {}}
        o = entry["options"]
        prefix = f"w.{n}."
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = const(op.inputs[1]).astype(np.int64)
            b = const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            w_scale, _ = qparams(op.inputs[1])
            act_fn = ACTIVATIONS.get(opt.fusedActivationFunction)
            if act_fn is None:
                raise ValueError(f"op {n} ({name}) has fused activation {opt.fusedActivationFunction}; "
                                 "only NONE, RELU and RELU6 are supported")
            if name == "FULLY_CONNECTED":
                cout, k = w.shape
                filt = w
                positions = int(np.prod(xt["shape"])) // k
                geom = {"kernel": [1, 1], "stride": [1, 1], "padding": "VALID", "pad": [0, 0]}
                per_channel = len(w_scale) > 1
            else:
                if opt.dilationHFactor != 1 or opt.dilationWFactor != 1:
                    raise ValueError(f"op {n} ({name}) uses dilation; only dilation 1 is supported")
                _, ih, iw, cin = xt["shape"]
                _, oh, ow, cout = yt["shape"]
                if name == "CONV_2D":
                    _, kh, kw, _ = w.shape
                    filt = w.reshape(cout, -1)
                else:
                    _, kh, kw, c = w.shape
                    if c != cin:
                        raise ValueError(f"op {n} DEPTHWISE_CONV_2D has depth multiplier {c // cin}; "
                                         "only 1 is supported")
                    filt = w.reshape(kh * kw, c).T
                same = opt.padding == schema.Padding.SAME
                geom = {"kernel": [int(kh), int(kw)], "stride": [int(opt.strideH), int(opt.strideW)],
                        "padding": "SAME" if same else "VALID",
                        "pad": [_same_pad(ih, oh, kh, opt.strideH) if same else 0,
                                _same_pad(iw, ow, kw, opt.strideW) if same else 0]}
                positions = oh * ow
                per_channel = True
            k = filt.shape[1]
            if per_channel:
                scales = w_scale if len(w_scale) > 1 else np.repeat(w_scale, cout)
                mults = [quantize_multiplier(float(xt["scale"]) * float(s) / float(yt["scale"]))
                         for s in scales]
            else:    # GetQuantizedConvolutionMultipler: float32 product, then double
                real = float(np.float32(xt["scale"]) * np.float32(w_scale[0])) / float(yt["scale"])
                mults = [quantize_multiplier(real)] * cout
            bias = np.zeros(cout, np.int64) if b is None else b.astype(np.int64).reshape(-1)
            wq = filt + 128
            zu = in_zp + 128
            folded = bias - zu * wq.sum(axis=1) + 128 * zu * k
            # the engine's int32 accumulator: sum(u*w') + |folded bias| must stay below 2**31
            if 255 * 255 * k + int(np.abs(folded).max(initial=0)) >= 1 << 31:
                raise ValueError(f"op {n} ({name}): depth {k} or bias too large for the engine's "
                                 "int32 accumulator; split the layer")
            lo, hi = activation_range(act_fn, yt["scale"], out_zp)
            o.update(geom)
            o.update({"activation": act_fn, "act_range": [lo, hi], "input_zero_point": in_zp,
                      "output_zero_point": out_zp, "channels": int(cout), "depth": int(k),
                      "positions": int(positions)})
            arrays[prefix + "filter"] = wq.astype(np.uint8).reshape(-1)
            arrays[prefix + "bias"] = folded.astype(np.int32)
            arrays[prefix + "mult"] = np.array([m for m, _ in mults], np.int32)
            arrays[prefix + "shift"] = np.array([s for _, s in mults], np.int8)   # -31..30
            params += int(w.size) + (0 if b is None else int(b.size))
            macs += int(positions * cout * k)
        elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            act_fn = ACTIVATIONS.get(opt.fusedActivationFunction)
            if act_fn is None:
                raise ValueError(f"op {n} ({name}) has an unsupported fused activation")
            if name == "AVERAGE_POOL_2D" and (xt["scale"] != yt["scale"] or in_zp != out_zp):
                raise ValueError(f"op {n} AVERAGE_POOL_2D rescales; TFLite requires equal in/out "
                                 "quantisation")
            _, ih, iw, _ = xt["shape"]
            _, oh, ow, _ = yt["shape"]
            kh, kw = opt.filterHeight, opt.filterWidth
            same = opt.padding == schema.Padding.SAME
            lo, hi = activation_range(act_fn, yt["scale"], out_zp)
            o.update({"kernel": [int(kh), int(kw)], "stride": [int(opt.strideH), int(opt.strideW)],
                      "padding": "SAME" if same else "VALID",
                      "pad": [_same_pad(ih, oh, kh, opt.strideH) if same else 0,
                              _same_pad(iw, ow, kw, opt.strideW) if same else 0],
                      "activation": act_fn, "act_range": [lo, hi]})
        elif name == "MEAN":
            axes = sorted(int(a) % len(xt["shape"]) for a in const(op.inputs[1]).reshape(-1))
            shape = xt["shape"]
            if axes != list(range(1, len(shape) - 1)):
                raise ValueError(f"op {n} MEAN over axes {axes} of shape {shape}; only the mean over "
                                 "all axes between batch and channels is supported")
            count = int(np.prod(shape[1:-1]))
            mult, shift = mean_multiplier(count, xt["scale"], yt["scale"])
            o.update({"axes": axes, "count": count, "multiplier": mult, "shift": shift,
                      "input_zero_point": in_zp, "output_zero_point": out_zp})
        elif name == "RESHAPE":
            alias[yi] = xi
        elif name == "SOFTMAX":
            mult, left_shift, diff_min = softmax_params(xt["scale"], opt.beta)
            o.update({"beta": float(opt.beta), "input_multiplier": mult,
                      "input_left_shift": left_shift, "diff_min": diff_min})
            arrays[prefix + "exp"] = softmax_exp_table(mult, left_shift, diff_min)
        elif name == "ADD":
            x2 = op.inputs[1]
            x2i = act(x2)
            x2t = tensors[x2i]
            if x2t["shape"] != xt["shape"] or yt["shape"] != xt["shape"]:
                raise ValueError(f"op {n} ADD broadcasts {xt['shape']} + {x2t['shape']}; "
                                 "only equal shapes are supported")
            entry["inputs"].append(x2i)
            act_fn = ACTIVATIONS.get(opt.fusedActivationFunction)
            if act_fn is None:
                raise ValueError(f"op {n} ADD has an unsupported fused activation")
            s1, s2, so = (float(np.float32(t["scale"])) for t in (xt, x2t, yt))
            twice_max = 2 * max(s1, s2)
            m1, sh1 = quantize_multiplier(s1 / twice_max)
            m2, sh2 = quantize_multiplier(s2 / twice_max)
            mo, sho = quantize_multiplier(twice_max / ((1 << 20) * so))
            lo, hi = activation_range(act_fn, yt["scale"], out_zp)
            o.update({"left_shift": 20, "input_zero_points": [in_zp, x2t["zero_point"]],
                      "output_zero_point": out_zp, "multipliers": [m1, m2, mo],
                      "shifts": [sh1, sh2, sho], "activation": act_fn, "act_range": [lo, hi]})
        ops.append(entry)
    graph_output = act(sg.outputs[0])
    embedding = embedding_tensor(ops)
    arena_bytes = plan_arena(tensors, ops, alias, graph_input, graph_output, embedding)
    weight_bytes = int(sum(a.nbytes for a in arrays.values()))
    meta = {
        "input": {"shape": tensors[graph_input]["shape"], "scale": tensors[graph_input]["scale"],
                  "zero_point": tensors[graph_input]["zero_point"]},
        "output": {"shape": tensors[graph_output]["shape"], "scale": tensors[graph_output]["scale"],
                   "zero_point": tensors[graph_output]["zero_point"]},
        "graph": {"tensors": tensors, "ops": ops, "input": graph_input, "output": graph_output},
        "params": params, "macs": macs, "arena_bytes": arena_bytes, "weight_bytes": weight_bytes,
    }
    if embedding is not None:
        t = tensors[embedding]
        meta["embedding"] = {"size": int(np.prod(t["shape"])), "scale": t["scale"],
                             "zero_point": t["zero_point"], "offset": t["offset"]}
    return meta, arrays


def embedding_tensor(ops):
    """The input of the last FULLY_CONNECTED op (for tcn and dscnn the pooled features): the
    model's embedding, whose mass on-device enrollment checks against the room's
    (firmware/enroll.py) and the enrollment benchmark's pooled matcher compares; None if the
    graph has no dense layer."""
    fcs = [op for op in ops if op["type"] == "FULLY_CONNECTED"]
    return fcs[-1]["inputs"][0] if fcs else None


def scratch_bytes(op: dict, tensors: list) -> int:
    """Per-op scratch the engine needs: the im2col patch of a conv that cannot read in place."""
    if op["type"] == "CONV_2D" and not conv_is_direct(op, tensors):
        return op["options"]["depth"]
    return 0


def conv_is_direct(op: dict, tensors: list) -> bool:
    """True when each conv patch is one contiguous run of the input (no im2col copy needed)."""
    o = op["options"]
    _, ih, iw, cin = tensors[op["inputs"][0]]["shape"]
    _, oh, ow, _ = tensors[op["outputs"][0]]["shape"]
    kh, kw = o["kernel"]
    sh, sw = o["stride"]
    padded = ((oh - 1) * sh + kh > ih) or ((ow - 1) * sw + kw > iw) or o["pad"] != [0, 0]
    return not padded and (kh == 1 or kw == iw)


def plan_arena(tensors, ops, alias, graph_input, graph_output, keep=None) -> int:
    """Greedy first-fit offsets with lifetime-based reuse; sets tensor/op "offset"; returns size.
    Tensor `keep` (the embedding) lives to the end, so it can be read after invoke()."""
    def root(t):
        while t in alias:
            t = alias[t]
        return t

    life = {}

    def use(t, step):
        r = root(t)
        a, b = life.get(r, (step, step))
        life[r] = (min(a, step), max(b, step))

    use(graph_input, -1)
    for step, op in enumerate(ops):
        for t in op["inputs"] + op["outputs"]:
            use(t, step)
    use(graph_output, len(ops))
    if keep is not None:
        use(keep, len(ops))
    buffers = [(max(int(np.prod(tensors[t]["shape"])), 1), life[t], ("t", t)) for t in life]
    for step, op in enumerate(ops):
        size = scratch_bytes(op, tensors)
        if size:
            buffers.append((size, (step, step), ("s", step)))
    placed = []
    for size, (a, b), key in sorted(buffers, key=lambda x: -x[0]):
        offset = 0
        moved = True
        while moved:
            moved = False
            for o2, s2, (a2, b2) in placed:
                if a2 <= b and a <= b2 and o2 < offset + size and offset < o2 + s2:
                    offset = (o2 + s2 + 3) & ~3
                    moved = True
        placed.append((offset, size, (a, b)))
        if key[0] == "t":
            tensors[key[1]]["offset"] = offset
        else:
            ops[key[1]]["scratch"] = offset
    for t in range(len(tensors)):
        if "offset" not in tensors[t]:
            tensors[t]["offset"] = tensors[root(t)]["offset"]
    return max((o + s for o, s, _ in placed), default=0)


# --- the graph as int32 records: what training/plan.py plans from --------------------------------
# (blob format 2 stored these and planned on the device; format 3 stores the plan itself.)

TENSOR_FIELDS = ("rank", "dim0", "dim1", "dim2", "dim3", "zero_point", "offset")
OP_FIELDS = ("type", "input", "input2", "output", "kernel_h", "kernel_w", "stride_h", "stride_w",
             "pad_top", "pad_left", "same", "act_lo", "act_hi", "input_zero_point",
             "output_zero_point", "channels", "depth", "positions", "scratch", "count",
             "multiplier0", "shift0", "multiplier1", "shift1", "multiplier2", "shift2",
             "input2_zero_point", "left_shift")
_OP = {name: i for i, name in enumerate(OP_FIELDS)}
_GEOMETRY = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D")


def pack_graph(g: dict):
    """{"tensors": [...], "ops": [...]} (as from_tflite builds it) -> (tensors, ops): one row of
    TENSOR_FIELDS per tensor and of OP_FIELDS per op, the fields the engine's plan needs."""
    tensors = np.zeros((len(g["tensors"]), len(TENSOR_FIELDS)), np.int64)
    for i, t in enumerate(g["tensors"]):
        shape = t["shape"]
        if len(shape) > 4:
            raise ValueError(f"tensor {i} has {len(shape)} dimensions; the engine handles up to 4")
        tensors[i, :1 + len(shape)] = [len(shape)] + list(shape)
        tensors[i, 5:] = t["zero_point"], t["offset"]
    ops = np.zeros((len(g["ops"]), len(OP_FIELDS)), np.int64)
    for n, op in enumerate(g["ops"]):
        r = ops[n]
        o = op["options"]
        if op["type"] not in SUPPORTED_OPS:
            raise ValueError(f"op {n} is {op['type']}, which the blob format cannot hold; "
                             f"supported ops: {', '.join(SUPPORTED_OPS)}")
        ins = op["inputs"] + [-1]
        r[[_OP["type"], _OP["input"], _OP["input2"], _OP["output"], _OP["scratch"]]] = (
            SUPPORTED_OPS.index(op["type"]), ins[0], ins[1], op["outputs"][0], op.get("scratch", -1))
        if op["type"] in _GEOMETRY:
            r[_OP["kernel_h"]:_OP["same"] + 1] = o["kernel"] + o["stride"] + o["pad"] + [
                o["padding"] == "SAME"]
        if "act_range" in o:
            r[_OP["act_lo"]:_OP["act_hi"] + 1] = o["act_range"]
        for key in ("input_zero_point", "output_zero_point", "channels", "depth", "positions",
                    "count", "left_shift"):
            r[_OP[key]] = o.get(key, 0)
        if op["type"] == "MEAN":
            r[_OP["multiplier0"]:_OP["shift0"] + 1] = o["multiplier"], o["shift"]
        if op["type"] == "ADD":
            r[_OP["input_zero_point"]], r[_OP["input2_zero_point"]] = o["input_zero_points"]
            r[_OP["multiplier0"]:_OP["shift2"] + 1] = [v for pair in zip(o["multipliers"], o["shifts"])
                                                       for v in pair]
    return tensors.tolist(), ops.tolist()
