"""Export: trained Keras model -> full-int8 TFLite -> firmware model blob.

The blob carries everything the device needs (docs/blob-format.md): labels, feature spec,
the front-end tables with the normalisation and input quantisation folded in, the int8
graph, and detector defaults. The device never re-derives a table.
"""
import json
from pathlib import Path

import numpy as np

from . import blob, convert, frontend_tables, graph
from .features import FeatureSpec, Normalisation

# Chosen on a validation-speaker stream (`python -m hark.training.stream --splits validation
# --seed 5 --sweep DIR`): the best recall at <= 50 false accepts/h with a median latency
# <= 300 ms. A 750 ms average waited ~150 ms longer for the same false accepts.
DETECTOR_DEFAULTS = {"average_window_ms": 500, "threshold": 0.8, "suppression_ms": 1500,
                     "minimum_count": 3, "thresholds": {}}
# How long after the wake word a command counts (the wake+command grammar).
COMMAND_WINDOW_MS = 3000


def grammar_for(config: dict, command_window_ms: int = COMMAND_WINDOW_MS):
    """The detector grammar a run was trained for, stored in the blob so that a board needs no
    configuration: `wake` for a wake word alone, `wake+command` for a wake word with commands
    (its label is the last), None for commands alone."""
    if not config.get("wake"):
        return None
    wake = config["labels"][-1]
    if config.get("commands"):
        return {"mode": "wake+command", "wake_word": wake, "command_window_ms": command_window_ms}
    return {"mode": "wake", "wake_word": wake, "command_window_ms": 0}


def export(run_dir, out_path, name: str = None, detector: dict = None,
           command_window_ms: int = COMMAND_WINDOW_MS, logit_offsets: dict = None) -> dict:
    """Convert run_dir/model.keras; write out_path (.hark) and, beside it, the .tflite, the
    float .keras and <name>.train.json (training config, float metrics and the logit offsets
    folded into the .tflite) for provenance."""
    import shutil

    import keras

    run_dir, out_path = Path(run_dir), Path(out_path)
    own_model = (run_dir / "model.keras").resolve()
    if logit_offsets and out_path.with_suffix(".keras").resolve() == own_model:
        raise ExportError("with logit offsets the float model beside the blob is adjusted too, "
                          "and the run's own model.keras must stay as trained: pass --out "
                          f"another name, e.g. {run_dir / 'adjusted.hark'}")
    config = json.loads((run_dir / "config.json").read_text())
    spec = FeatureSpec.from_dict(config["spec"])
    norm = Normalisation.from_dict(config["normalisation"])
    model = keras.models.load_model(run_dir / "model.keras")
    calibration = np.load(run_dir / "calibration.npz")["x"]
    tflite = convert.to_int8_tflite(model, [calibration[i:i + 1] for i in range(len(calibration))])
    if logit_offsets:
        tflite = offset_logits(tflite, config["labels"], logit_offsets)
        offset_keras(model, config["labels"], logit_offsets)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info = write_model_blob(tflite, spec, norm, config["labels"], out_path,
                            name or out_path.stem, detector, family=config.get("family"),
                            grammar=grammar_for(config, command_window_ms))
    out_path.with_suffix(".tflite").write_bytes(tflite)
    if logit_offsets:
        model.save(out_path.with_suffix(".keras"))
    elif out_path.with_suffix(".keras").resolve() != own_model:
        shutil.copyfile(run_dir / "model.keras", out_path.with_suffix(".keras"))
    metrics = run_dir / "metrics.json"
    out_path.with_suffix(".train.json").write_text(json.dumps(
        {"config": config, "metrics": json.loads(metrics.read_text()) if metrics.exists() else {},
         "logit_offsets": dict(logit_offsets or {})}, indent=1))
    return info


def _final_dense(tflite: bytes):
    """(model object, subgraph, the FULLY_CONNECTED op that feeds the final SOFTMAX, the int8
    step of its output: the logits)."""
    model, sg, kinds = graph.editable(tflite)
    fc = sg.operators[-2] if kinds[-2:] == ["FULLY_CONNECTED", "SOFTMAX"] else None
    if fc is None or len(fc.inputs) < 3 or fc.inputs[2] < 0:
        raise ExportError("logit offsets need a model that ends in a dense layer with a bias "
                          "and a softmax (every `hark train` family does)")
    return model, sg, fc, float(sg.tensors[fc.outputs[0]].quantization.scale[0])


def logit_step(tflite: bytes) -> float:
    """The int8 step of the model's logits (the dense layer's output scale)."""
    return _final_dense(tflite)[3]


# An offset of more steps than this could push a logit out of the int8 range the converter
# calibrated on, where it would clip instead of moving.
MAX_OFFSET_STEPS = 32


def label_values(items) -> dict:
    """["_unknown_=1", "on=1.5"] -> {"_unknown_": 1.0, "on": 1.5}: the LABEL=V form of
    --logit-offset and --label-threshold. ValueError names the item that is not LABEL=number."""
    out = {}
    for item in items:
        label, _, value = item.partition("=")
        try:
            out[label.strip()] = float(value)
        except ValueError:
            raise ValueError(item) from None
    return out


def offset_logits(tflite: bytes, labels, offsets: dict) -> bytes:
    """Post-hoc logit adjustment (Menon et al., ICLR 2021): add offsets[label] to the model's
    logits, folded into the int32 bias of the FULLY_CONNECTED op that feeds the final SOFTMAX.
    The ops, kernels and quantisation are unchanged, so the firmware stays bit-exact with
    TFLite Micro on the adjusted flatbuffer. A positive `_unknown_` offset trades a little
    command recall for more unknown words heard as unknown (docs/accuracy.md, "Real unseen speakers")."""
    strange = sorted(set(offsets) - set(labels))
    if strange:
        raise ExportError(f"a logit offset for {', '.join(strange)}, which the model does not "
                          f"output; its labels are {', '.join(labels)}")
    model, sg, fc, step = _final_dense(tflite)
    too_far = {k: v for k, v in offsets.items() if abs(v) > MAX_OFFSET_STEPS * step}
    if too_far:
        raise ExportError(f"logit offset {too_far} is more than {MAX_OFFSET_STEPS} of the "
                          f"logits' int8 steps ({step:.4g}): it would clip; at most "
                          f"{MAX_OFFSET_STEPS * step:.3g}")
    bias = sg.tensors[fc.inputs[2]]
    scales = np.broadcast_to(np.asarray(bias.quantization.scale, np.float64), (len(labels),))
    values = np.frombuffer(bytes(bytearray(model.buffers[bias.buffer].data)),
                           np.int32).astype(np.int64)
    for label, offset in offsets.items():
        k = labels.index(label)
        values[k] += int(round(offset / scales[k]))
    if np.abs(values).max() >= 2 ** 31:
        raise ExportError("a logit offset overflows the dense layer's int32 bias: use a "
                          "smaller one")
    model.buffers[bias.buffer].data = np.frombuffer(values.astype(np.int32).tobytes(), np.uint8)
    return graph.repacked(model, len(tflite))


def offset_keras(model, labels, offsets: dict) -> None:
    """The same offsets added to the float model's last dense bias, so that the .keras beside a
    blob computes what its .tflite does."""
    import keras

    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    kernel, bias = dense.get_weights()
    for label, offset in offsets.items():
        bias[labels.index(label)] += offset
    dense.set_weights([kernel, bias])


def repack(tflite_path, out_path, name: str = None, detector: dict = None,
           command_window_ms: int = COMMAND_WINDOW_MS) -> dict:
    """Write the blob of an already converted model from its .tflite and the .train.json beside
    it (labels, feature spec, normalisation): the same int8 graph in the current blob format,
    with no Keras or re-conversion involved."""
    tflite_path = Path(tflite_path)
    recipe = tflite_path.with_suffix(".train.json")
    config = json.loads(recipe.read_text())["config"]
    return write_model_blob(tflite_path.read_bytes(), FeatureSpec.from_dict(config["spec"]),
                            Normalisation.from_dict(config["normalisation"]), config["labels"],
                            out_path, name or Path(out_path).stem, detector, config.get("family"),
                            grammar_for(config, command_window_ms))


class ExportError(ValueError):
    """A model the device could not run as exported; the message says why and what to do."""


def check_compatible(spec: FeatureSpec, norm: Normalisation, labels, model_meta: dict,
                     detector: dict = None):
    """Refuse a feature spec the device front end does not compute, or one that does not
    match the model's input, before anything is written."""
    if spec.sample_rate != DEVICE_RATE:
        raise ExportError(f"the features are at {spec.sample_rate} Hz, but the device and "
                          f"`hark simulate` feed {DEVICE_RATE} Hz audio (every time would be off by "
                          f"{DEVICE_RATE / spec.sample_rate:g}x): train at {DEVICE_RATE} Hz")
    if spec.n_fft != 512:
        raise ExportError(f"the device front end is a 512-point FFT, the features use "
                          f"n_fft={spec.n_fft}: train with the default spec")
    want = [int(n) for n in model_meta["input"]["shape"][1:3]]
    if want != [spec.n_frames, spec.n_mfcc]:
        raise ExportError(f"the model reads {want[0]} frames x {want[1]} coefficients, the feature "
                          f"spec makes {spec.n_frames} x {spec.n_mfcc}: the .train.json does not "
                          "belong to this model")
    if len(norm.mean) != spec.n_mfcc:
        raise ExportError(f"the normalisation has {len(norm.mean)} coefficients, the feature spec "
                          f"{spec.n_mfcc}: the .train.json is inconsistent; re-export from the run")
    if int(model_meta["output"]["shape"][-1]) != len(labels):
        raise ExportError(f"the model has {model_meta['output']['shape'][-1]} outputs but "
                          f"{len(labels)} labels: the .train.json does not belong to this model")
    unknown = sorted(set((detector or {}).get("thresholds") or {}) - set(labels))
    if unknown:
        raise ExportError(f"a threshold for {', '.join(unknown)}, which the model does not "
                          f"detect; its labels are {', '.join(labels)}")


DEVICE_RATE = 16000


def write_model_blob(tflite: bytes, spec: FeatureSpec, norm: Normalisation, labels, out_path,
                     name: str, detector: dict = None, family: str = None,
                     grammar: dict = None) -> dict:
    model_meta, model_arrays = graph.from_tflite(tflite)
    check_compatible(spec, norm, labels, model_meta, detector)
    fe_meta, fe_arrays = frontend_tables.build(spec, norm, model_meta["input"]["scale"],
                                               model_meta["input"]["zero_point"])
    features = spec.to_dict()
    features["normalisation"] = norm.to_dict()
    meta = {"format": blob.VERSION, "name": name, "family": family, "labels": list(labels),
            "features": features, "frontend": fe_meta, "model": model_meta,
            "detector": {**DETECTOR_DEFAULTS, **(detector or {})}}
    if grammar:
        meta["grammar"] = grammar
    if "command_average_ms" in meta["detector"] and (grammar or {}).get("mode") != "wake+command":
        raise ExportError("a command averaging window is for a model with a wake word and "
                          "commands (hark train --wake PHRASE --commands ...); this one has "
                          f"{'the ' + grammar['mode'] + ' grammar' if grammar else 'commands alone'}"
                          ": set --average-window-ms instead")
    data = blob.write_blob(out_path, meta, {**fe_arrays, **model_arrays})
    return {"path": str(out_path), "blob_bytes": len(data), "tflite_bytes": len(tflite),
            "params": model_meta.get("params"), "macs": model_meta.get("macs"),
            "arena_bytes": model_meta.get("arena_bytes"),
            "weight_bytes": model_meta.get("weight_bytes")}
