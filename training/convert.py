"""Keras -> full-int8 TFLite, and TFLite Micro as the int8 reference interpreter.

TFLite Micro (not tf.lite.Interpreter) is the reference the device engine must match bit for bit:
the desktop interpreter's optimised kernels round differently.
"""
import numpy as np


def to_int8_tflite(keras_model, representative_batches, per_channel_dense: bool = True) -> bytes:
    """Full-int8 flatbuffer (int8 in/out, per-channel weights) from a batch-1 concrete function.

    representative_batches: iterable of float arrays shaped (n, *input_shape). A fixed batch
    of 1 keeps SHAPE/STRIDED_SLICE/PACK out of the graph around Flatten/Reshape.
    per_channel_dense=False quantises Dense layers per tensor, for older TFLite Micro builds.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    shape = (1,) + tuple(keras_model.input_shape[1:])
    fn = tf.function(lambda x: keras_model(x, training=False))
    # Freeze: Keras 3 variables would otherwise become READ_VARIABLE ops.
    concrete = convert_variables_to_constants_v2(
        fn.get_concrete_function(tf.TensorSpec(shape, tf.float32)))
    batches = [np.asarray(b, np.float32) for b in representative_batches]
    if not batches:
        raise ValueError("representative_batches is empty; pass a few batches of real inputs")

    def representative():
        for batch in batches:
            for x in batch:
                yield [x.reshape(shape)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel_dense
    return converter.convert()


def tflm_interpreter(tflite_bytes: bytes):
    """A TFLite Micro interpreter for the flatbuffer."""
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(bytes(tflite_bytes))


def run_tflm(tflite_bytes: bytes, int8_inputs) -> np.ndarray:
    """Run TFLite Micro on each int8 input; returns int8 outputs shaped (n, *output_shape[1:])."""
    interp = tflm_interpreter(tflite_bytes)
    in_shape = tuple(interp.get_input_details(0)["shape"])
    inputs = np.asarray(int8_inputs, np.int8)
    outs = []
    for x in inputs:
        interp.set_input(x.reshape(in_shape), 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0), np.int8).reshape(-1))
    out_shape = tuple(interp.get_output_details(0)["shape"])[1:]
    return np.stack(outs).reshape((len(inputs),) + out_shape)
