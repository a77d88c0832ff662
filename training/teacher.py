"""A pretrained speech teacher for training: Google's speech embedding (as bundled, in ONNX,
by the `openwakeword==0.4.0` wheel) plus a small classifier head trained on hark's labels.

The embedding network has heard far more speakers than any Speech Commands subset, so a
head on it recognises unseen speakers better than hark's small students (REFERENCE.md:
91.9 % vs 83 % on held-out real speakers). It costs ~80 M MACs per clip: it only labels
training audio (soft targets, `hark train --teacher`), it never runs on a device.

Pipeline (openwakeword.utils.AudioFeatures): int16-scaled audio -> melspectrogram.onnx
(32 bands, 97 frames/s) -> x / 10 + 2 -> 76-frame windows every 8 frames ->
embedding_model.onnx -> one 96-dim vector per 80 ms. A 1 s clip is centred in a 2 s frame,
which gives 16 vectors. The network is convolutional with a time stride of 8 frames, so
instead of 16 overlapping windows it runs once over the whole frame (its input length
patched at load): the same vectors, bit for bit, at a fraction of the cost.

Licence: the wheel's code is Apache-2.0; its README calls the bundled models CC BY-NC-SA
4.0 and also says the embedding is Google's Apache-2.0 TF Hub model re-implemented. hark
ships no teacher weights; a model card records when a model was distilled from it.
"""
import hashlib
import os
from pathlib import Path

import numpy as np

from . import fetch

FRAME_SAMPLES = 32000          # 2 s around each 1 s clip
MEL_FRAMES = 197               # melspectrogram frames of a 2 s frame
EMBEDDINGS_PER_CLIP = 16
EMBEDDING_DIM = 96
TEACHER_NAME = "oww-embedding"  # what --teacher and model cards call it


class TeacherUnavailable(RuntimeError):
    """The optional teacher packages are missing; the message says how to install them."""


def model_dir() -> Path:
    try:
        import onnxruntime  # noqa: F401
        import openwakeword
    except ImportError as exc:
        raise TeacherUnavailable(
            f"the teacher needs {exc.name!r}: pip install openwakeword==0.4.0 onnxruntime "
            "(requirements/dev.txt pins both; later openwakeword versions download their "
            "models at run time)") from exc
    return Path(openwakeword.__file__).parent / "resources" / "models"


def cache_dir() -> Path:
    """Where embeddings of training audio and trained heads are kept between runs."""
    return fetch.cache_dir() / "teacher"


class SpeechEmbedding:
    """The frozen embedding: 1 s clips (float in [-1, 1], 16 kHz) -> (n, 16, 96)."""

    def __init__(self, threads: int = 0):
        import onnxruntime as ort

        models = model_dir()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self._mel = ort.InferenceSession(str(models / "melspectrogram.onnx"), options,
                                         providers=providers)
        self._embed = ort.InferenceSession(_one_pass_graph(models / "embedding_model.onnx"),
                                           options, providers=providers)

    def mel(self, clips: np.ndarray) -> np.ndarray:
        pad = (FRAME_SAMPLES - clips.shape[1]) // 2
        frames = np.zeros((len(clips), FRAME_SAMPLES), np.float32)
        frames[:, pad:pad + clips.shape[1]] = np.clip(clips, -1, 1) * 32767
        spec = self._mel.run(None, {"input": frames})[0]      # (n, 1, t, 32)
        return spec[:, 0] / 10 + 2

    def __call__(self, clips, batch: int = 64) -> np.ndarray:
        clips = np.asarray(clips, np.float32)
        out = np.empty((len(clips), EMBEDDINGS_PER_CLIP, EMBEDDING_DIM), np.float32)
        for i in range(0, len(clips), batch):
            spec = self.mel(clips[i:i + batch])[..., None]
            emb = self._embed.run(None, {"input_1": spec})[0]   # (n, 96, 16, 1)
            out[i:i + len(spec)] = emb[..., 0].transpose(0, 2, 1)
        return out

    def cached(self, clips) -> np.ndarray:
        """Same as calling, but a block of audio already embedded is read from the cache:
        training runs with the same seed augment identically, so repeats cost nothing."""
        clips = np.ascontiguousarray(clips, np.float32)
        key = hashlib.sha1(clips.tobytes()).hexdigest()
        path = cache_dir() / f"{key}.npy"
        if path.exists():
            try:
                return np.load(path)
            except (OSError, ValueError):
                pass  # a half-written cache entry: compute again
        emb = self(clips)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, path)
        return emb


def _one_pass_graph(path) -> bytes:
    """embedding_model.onnx with its input widened from one 76-frame window to the whole
    2 s frame (MEL_FRAMES): its two reshapes hard-code the window length."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = MEL_FRAMES
    first, last = [n for n in model.graph.node if n.op_type == "Reshape"]
    for init in model.graph.initializer:
        if init.name == first.input[1]:   # (-1, 1, 76, 34) after padding the 32 bands
            shape = numpy_helper.to_array(init).copy()
            shape[2] = MEL_FRAMES
            init.CopyFrom(numpy_helper.from_array(shape, init.name))
    # The last reshape flattens one (96, 1, 1) output per window; keep all 16 instead.
    model.graph.node.remove(last)
    output = model.graph.output[0]
    output.name = last.input[0]
    dims = output.type.tensor_type.shape.dim
    del dims[:]
    for d in ("batch", EMBEDDING_DIM, EMBEDDINGS_PER_CLIP, 1):
        dims.add().__setattr__("dim_param" if isinstance(d, str) else "dim_value", d)
    for init in [i for i in model.graph.initializer if i.name == last.input[1]]:
        model.graph.initializer.remove(init)
    return model.SerializeToString()


def head_model(n_labels: int, width: int = 128):
    """The classifier on the frozen embedding: two 1-D convolutions over the 16 steps."""
    import keras
    from keras import layers

    inputs = keras.Input((EMBEDDINGS_PER_CLIP, EMBEDDING_DIM), name="embedding")
    x = layers.Dropout(0.1)(inputs)
    x = layers.Conv1D(width, 3, activation="relu")(x)
    x = layers.Conv1D(width, 3, activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dropout(0.3)(x)
    logits = layers.Dense(n_labels, name="logits")(x)
    return keras.Model(inputs, logits, name="teacher_head")


def fit_head(embeddings, targets, n_labels: int, seed: int, epochs: int = 30,
             val=None, verbose: int = 0):
    """Train the head with class weights (scarce words count as much as plentiful ones).
    Returns the Keras model whose output is logits."""
    import keras

    keras.utils.set_random_seed(seed)
    model = head_model(n_labels)
    counts = np.bincount(targets, minlength=n_labels).astype(np.float64)
    weights = {i: float(len(targets) / (n_labels * c)) for i, c in enumerate(counts) if c}
    steps = epochs * int(np.ceil(len(targets) / 128))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(embeddings, targets, batch_size=128, epochs=epochs, class_weight=weights,
              validation_data=val, shuffle=True, verbose=verbose)
    return model


def soft_targets(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T): the teacher's view of how alike the classes sound."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
