"""A metric-learning objective beside the classifier: prototypical episodes over many words, on
the pooled features the blob marks as the embedding (training/embedding.py), so that enrolled
words the model has no class for (firmware/enroll.py, issue 16) land apart from the rest.

A classifier's features only have to separate its own classes; a word it never had a class for
falls wherever _unknown_ is. Each training step here also draws an episode: `way` words, `shots`
clips of each averaged into a prototype and one more clip per word as the query, which must be
nearest (L1, the distance firmware/match.py uses) to its own word's prototype. The words are every
word of the training folders (real train split and synthetic pools, commands and unknown words
alike) and of the extra `embedding_synth` folders, except the held-out ones (HELD_OUT unless the
run names others): the words the enrollment benchmark (training/enroll_eval.py) measures stay
unseen by this objective.
"""
import numpy as np

from . import augment as aug
from .features import batch_features, fit_clip

# enroll_eval.NOVEL and the other auxiliary words of Speech Commands v2 (some only in the full set)
HELD_OUT = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
            "backward", "follow", "forward", "learn", "visual")


def pool_clips(clips, held_out=HELD_OUT, per_word=24, shots=2, rng=None) -> dict:
    """{word: clips}: at most per_word clips of each word not held out, and only words with enough
    clips for a prototype and a query (shots + 1)."""
    rng = rng or np.random.default_rng(0)
    by_word = {}
    for c in clips:
        if c.word not in held_out and not c.word.startswith("_"):
            by_word.setdefault(c.word, []).append(c)
    out = {}
    for word in sorted(by_word):
        group = by_word[word]
        if len(group) > shots:
            out[word] = [group[i] for i in sorted(rng.permutation(len(group))[:per_word])]
    return out


class EpisodePool:
    """Augmented features of every pooled clip (`views` copies) and their words, from which
    episodes are drawn."""

    def __init__(self, audio_by_word: dict, noise, spec, views, augment_config, rng):
        self.words = sorted(audio_by_word)
        self.views = views
        self.clips_of = []      # per word, its recordings' numbers (x holds views rows each)
        clips = []
        for word in self.words:
            first = len(clips) // views
            self.clips_of.append(list(range(first, first + len(audio_by_word[word]))))
            for y in audio_by_word[word]:
                for _ in range(views):
                    clips.append(aug.augment(fit_clip(y, spec), rng, noise, augment_config))
        self.x = batch_features(clips, spec) if clips else np.zeros((0, *spec.shape), np.float32)

    def __len__(self):
        return len(self.words)

    def episode(self, way: int, shots: int, rng) -> np.ndarray:
        """Indices into x, word-major: per word `shots` support clips then one query, distinct
        recordings, each in a random augmented view."""
        words = rng.choice(len(self.words), size=min(way, len(self.words)), replace=False)
        idx = []
        for w in words:
            picks = rng.choice(self.clips_of[w], size=shots + 1, replace=False)
            idx += [int(c) * self.views + int(rng.integers(self.views)) for c in picks]
        return np.asarray(idx)


def proto_loss(emb, way: int, shots: int, log_scale):
    """Cross-entropy of each query over the prototypes (mean of the support embeddings), with
    logits -exp(log_scale) * mean |query - prototype|: the L1 distance the pooled enrollment
    matcher (training/enroll_eval.py) matches by."""
    import tensorflow as tf

    e = tf.reshape(emb, (way, shots + 1, -1))
    protos = tf.reduce_mean(e[:, :shots], axis=1)
    queries = e[:, shots]
    d = tf.reduce_mean(tf.abs(queries[:, None, :] - protos[None, :, :]), axis=-1)
    logits = -tf.exp(log_scale) * d
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.range(way), logits=logits))


def embedding_output(model):
    """The input of the model's last dense layer: what the exporter marks as the embedding."""
    import keras
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    return dense.input


class Trainer:
    """Classifier batches with one episode appended, in one forward pass (batch normalisation sees
    both), loss = cross-entropy + weight * prototypical loss."""

    def __init__(self, model, pool: EpisodePool, schedule, weight: float, way: int, shots: int):
        import keras
        import tensorflow as tf

        self.model, self.pool, self.way, self.shots = model, pool, min(way, len(pool)), shots
        both = keras.Model(model.inputs[0], [model.outputs[0], embedding_output(model)])
        self.log_scale = tf.Variable(np.log(10.0), dtype=tf.float32, name="proto_log_scale")
        self.optimizer = keras.optimizers.Adam(schedule)
        variables = both.trainable_variables + [self.log_scale]
        ce = keras.losses.SparseCategoricalCrossentropy()

        @tf.function(reduce_retracing=True)
        def step(x, y):
            with tf.GradientTape() as tape:
                probs, emb = both(x, training=True)
                n = tf.shape(y)[0]
                loss_c = ce(y, probs[:n])
                loss_e = proto_loss(emb[n:], self.way, self.shots, self.log_scale)
                loss = loss_c + weight * loss_e
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            hit = tf.cast(tf.equal(tf.argmax(probs[:n], axis=1, output_type=tf.int64), y), tf.float32)
            return loss_c, loss_e, tf.reduce_mean(hit)
        self._step = step

    def epoch(self, x, y, batch_size: int, rng) -> dict:
        """One pass over (x, y) in shuffled batches; the mean losses and training accuracy."""
        order = rng.permutation(len(x))
        sums, n = np.zeros(3), 0
        for start in range(0, len(order), batch_size):
            b = order[start:start + batch_size]
            e = self.pool.episode(self.way, self.shots, rng)
            xb = np.concatenate([x[b], self.pool.x[e]])
            sums += [float(v) for v in self._step(xb, y[b])]
            n += 1
        loss, emb_loss, acc = sums / max(n, 1)
        return {"loss": loss, "embedding_loss": emb_loss, "accuracy": acc,
                "embedding_scale": float(np.exp(self.log_scale.numpy()))}


def build_pool(sources, noise, spec, cfg, augment_config, rng) -> EpisodePool:
    """The episode pool of a run: sources are (audio, clips) pairs (the caller chose the folders
    and splits); the words of cfg.embedding_holdout are left out."""
    audio, clips = [], []
    for a, c in sources:
        audio += list(a)
        clips += list(c)
    chosen = pool_clips(clips, set(cfg.embedding_holdout), cfg.embedding_per_word,
                        cfg.embedding_shots, rng)
    index = {id(c): i for i, c in enumerate(clips)}
    return EpisodePool({w: [audio[index[id(c)]] for c in cs] for w, cs in chosen.items()},
                       noise, spec, cfg.views, augment_config, rng)
