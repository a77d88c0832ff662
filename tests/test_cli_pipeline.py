"""End to end on a tiny subset: hark train (1 epoch) -> export -> eval, through the CLI."""
import json

import numpy as np
import pytest

from hark.cli import main


@pytest.fixture(scope="module")
def exported(shared_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", str(shared_data), "--out", str(run), "--epochs", "1",
                 "--max-per-word", "6", "--views", "1", "--family", "tcn"]) == 0
    assert main(["export", str(run), "--out", str(run / "tiny.hark")]) == 0
    return run


def test_run_directory_has_everything(exported):
    for name in ("model.keras", "config.json", "history.json", "metrics.json", "history.png",
                 "confusion_float.png", "tiny.hark", "tiny.tflite"):
        assert (exported / name).stat().st_size > 0, name
    config = json.loads((exported / "config.json").read_text())
    assert config["family"] == "tcn" and len(config["normalisation"]["mean"]) == 10


def test_eval_json_and_plot(exported, shared_data, capsys):
    out = exported / "eval.json"
    assert main(["eval", "--model", str(exported / "tiny.hark"), "--data", str(shared_data),
                 "--max-per-word", "2", "--json", str(out), "--plot",
                 str(exported / "cm.png")]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) >= {"accuracy", "n", "per_class", "confusion", "labels"}
    assert metrics["n"] == np.sum(metrics["confusion"])
    assert {"on", "off", "_unknown_", "_silence_"} <= set(metrics["per_class"])
    assert (exported / "cm.png").stat().st_size > 1000
    assert "confusion" in capsys.readouterr().out


def test_int8_agrees_with_float(exported):
    """The int8 model (TFLite Micro) and the float model pick the same label on most inputs."""
    import keras

    from hark.training import blob, convert, evaluate

    data = np.load(exported / "test_features.npz")
    meta, _ = blob.read_blob(exported / "tiny.hark")
    config = json.loads((exported / "config.json").read_text())
    from hark.training.features import Normalisation
    xn = Normalisation.from_dict(config["normalisation"]).apply(data["x"])
    float_pred = keras.models.load_model(exported / "model.keras").predict(xn, verbose=0).argmax(1)
    q = meta["model"]["input"]
    x8 = evaluate.quantise(xn, q["scale"], q["zero_point"])
    int8_pred = convert.run_tflm((exported / "tiny.tflite").read_bytes(), x8).argmax(1)
    assert (float_pred == int8_pred).mean() >= 0.9


def test_train_errors_are_clear(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 1
    assert "not a training run" in capsys.readouterr().err
