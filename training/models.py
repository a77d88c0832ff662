"""Keras model families. All take (frames, n_mfcc) features and end in a softmax.

- dscnn:     MLPerf Tiny KWS DS-CNN reference (2-D convolutions over time x coefficient).
- tcn:       hark's streaming temporal CNN: valid, causal convolutions along time only,
             with the coefficients as channels, so each new 20 ms frame can be pushed
             through incrementally on the device.
- tiny_conv: TFLite Micro micro_speech `tiny_conv` (one strided conv + dense).
"""
import keras
from keras import layers

FAMILIES = ("tcn", "dscnn", "tiny_conv")


def _bn_relu(x):
    return layers.ReLU()(layers.BatchNormalization()(x))


def dscnn(input_shape, n_labels: int) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1))(inputs)
    x = layers.Dropout(0.1)(x)
    x = _bn_relu(layers.Conv2D(64, (10, 4), strides=(2, 2), padding="same", use_bias=False)(x))
    x = layers.Dropout(0.2)(x)
    for _ in range(4):
        x = _bn_relu(layers.DepthwiseConv2D((3, 3), padding="same", use_bias=False)(x))
        x = _bn_relu(layers.Conv2D(64, 1, use_bias=False)(x))
        x = layers.Dropout(0.2)(x)
    x = layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = layers.Flatten()(x)
    outputs = layers.Softmax()(layers.Dense(n_labels)(x))
    return keras.Model(inputs, outputs, name="dscnn")


def tcn(input_shape, n_labels: int, width: int = 64) -> keras.Model:
    """Temporal convolutions with kernel (k, 1) and VALID padding: every layer only looks
    back in time, which is what frame-by-frame streaming needs."""
    frames, coeffs = input_shape
    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((frames, 1, coeffs))(inputs)
    x = _bn_relu(layers.Conv2D(width, (5, 1), use_bias=False)(x))
    x = layers.Dropout(0.1)(x)
    for stride, channels in ((2, width), (2, width), (1, width), (1, width)):
        x = _bn_relu(layers.DepthwiseConv2D((5, 1), strides=(stride, 1), use_bias=False)(x))
        x = _bn_relu(layers.Conv2D(channels, 1, use_bias=False)(x))
        x = layers.Dropout(0.15)(x)
    x = layers.AveragePooling2D(pool_size=(x.shape[1], 1))(x)
    x = layers.Flatten()(x)
    outputs = layers.Softmax()(layers.Dense(n_labels)(x))
    return keras.Model(inputs, outputs, name="tcn")


def tiny_conv(input_shape, n_labels: int) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1))(inputs)
    x = layers.Conv2D(8, (10, 8), strides=(2, 2), padding="same", activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Softmax()(layers.Dense(n_labels)(x))
    return keras.Model(inputs, outputs, name="tiny_conv")


def build(family: str, input_shape, n_labels: int, width: int = 0) -> keras.Model:
    """width (tcn only): channels per layer; 0 = the family default."""
    builders = {"tcn": tcn, "dscnn": dscnn, "tiny_conv": tiny_conv}
    if family not in builders:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    if width and family == "tcn":
        return tcn(tuple(input_shape), n_labels, width)
    return builders[family](tuple(input_shape), n_labels)


def logits_of(model: keras.Model) -> keras.Model:
    """The same weights without the final softmax: every family ends in one, and distillation,
    teacher runs and logit offsets work on what it is fed."""
    return keras.Model(model.inputs, model.layers[-1].input)
