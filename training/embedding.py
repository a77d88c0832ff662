"""The model's embedding on the host: the same int8 graph cut at the layer before the classifier.

graph.embedding_tensor marks the input of the last FULLY_CONNECTED op (for tcn the pooled
features); the firmware reads it from the arena after an inference (engine.Interpreter.embedding,
firmware/plan.py). Here the TFLite flatbuffer is cut at that tensor and run by TFLite Micro, the
reference the engine matches bit for bit (tests/test_enroll.py ties the two).
"""
import numpy as np

from . import convert


def cut_tflite(tflite: bytes) -> bytes:
    """The flatbuffer with the ops from the last FULLY_CONNECTED on removed and that op's input
    as the only output: TFLite Micro then computes the embedding with the same int8 kernels."""
    from .graph import editable, repacked

    model, sg, kinds = editable(tflite)
    if "FULLY_CONNECTED" not in kinds:
        raise ValueError("the model has no dense layer, so no embedding to cut at")
    last = len(kinds) - 1 - kinds[::-1].index("FULLY_CONNECTED")
    sg.outputs = [int(sg.operators[last].inputs[0])]
    sg.operators = sg.operators[:last]
    return repacked(model, len(tflite))


def embed(cut: bytes, int8_inputs) -> np.ndarray:
    """int8 model inputs (n, ...) -> int8 embeddings (n, size) by TFLite Micro on a cut graph."""
    out = convert.run_tflm(cut, int8_inputs)
    return out.reshape(len(out), -1)
