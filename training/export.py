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


def export(run_dir, out_path, name: str = None, detector: dict = None) -> dict:
    """Convert run_dir/model.keras; write out_path (.hark) and, beside it, the .tflite, the
    float .keras and <name>.train.json (training config and float metrics) for provenance."""
    import shutil

    import keras

    run_dir, out_path = Path(run_dir), Path(out_path)
    config = json.loads((run_dir / "config.json").read_text())
    spec = FeatureSpec.from_dict(config["spec"])
    norm = Normalisation.from_dict(config["normalisation"])
    model = keras.models.load_model(run_dir / "model.keras")
    calibration = np.load(run_dir / "calibration.npz")["x"]
    tflite = convert.to_int8_tflite(model, [calibration[i:i + 1] for i in range(len(calibration))])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.with_suffix(".tflite").write_bytes(tflite)
    if out_path.with_suffix(".keras").resolve() != (run_dir / "model.keras").resolve():
        shutil.copyfile(run_dir / "model.keras", out_path.with_suffix(".keras"))
    metrics = run_dir / "metrics.json"
    out_path.with_suffix(".train.json").write_text(json.dumps(
        {"config": config, "metrics": json.loads(metrics.read_text()) if metrics.exists() else {}},
        indent=1))
    return write_model_blob(tflite, spec, norm, config["labels"], out_path,
                            name or out_path.stem, detector, family=config.get("family"))


def repack(tflite_path, out_path, name: str = None, detector: dict = None) -> dict:
    """Write the blob of an already converted model from its .tflite and the .train.json beside
    it (labels, feature spec, normalisation): the same int8 graph in the current blob format,
    with no Keras or re-conversion involved."""
    tflite_path = Path(tflite_path)
    recipe = tflite_path.with_suffix(".train.json")
    config = json.loads(recipe.read_text())["config"]
    return write_model_blob(tflite_path.read_bytes(), FeatureSpec.from_dict(config["spec"]),
                            Normalisation.from_dict(config["normalisation"]), config["labels"],
                            out_path, name or Path(out_path).stem, detector, config.get("family"))


def write_model_blob(tflite: bytes, spec: FeatureSpec, norm: Normalisation, labels, out_path,
                     name: str, detector: dict = None, family: str = None) -> dict:
    model_meta, model_arrays = graph.from_tflite(tflite)
    fe_meta, fe_arrays = frontend_tables.build(spec, norm, model_meta["input"]["scale"],
                                               model_meta["input"]["zero_point"])
    features = spec.to_dict()
    features["normalisation"] = norm.to_dict()
    meta = {"format": blob.VERSION, "name": name, "family": family, "labels": list(labels),
            "features": features, "frontend": fe_meta, "model": model_meta,
            "detector": {**DETECTOR_DEFAULTS, **(detector or {})}}
    data = blob.write_blob(out_path, meta, {**fe_arrays, **model_arrays})
    return {"path": str(out_path), "blob_bytes": len(data), "tflite_bytes": len(tflite),
            "params": model_meta.get("params"), "macs": model_meta.get("macs"),
            "arena_bytes": model_meta.get("arena_bytes"),
            "weight_bytes": model_meta.get("weight_bytes")}
