# hark enrolled words while listening: the model's embedding (engine .embedding, the pooled
# features before the classifier) against the int8 templates a user recorded (enroll.py).
# A word matches when the L1 distance to its nearest template is within the word's threshold
# (calibrated at enrollment from the spread of its examples). Imported only when enrolled words
# exist; update() is integer-only and allocates nothing.
from array import array

import micropython

from detector import TIME_MASK


@micropython.viper
def _nearest(emb: ptr8, templates: ptr8, counts: ptr8, n_words: int, size: int, out: ptr32):
    # out[w] = min over word w's templates of sum |emb - template| (both in offset form q + 128)
    t = 0
    for w in range(n_words):
        best = 0x3FFFFFFF
        for _ in range(counts[w]):
            s = 0
            for i in range(size):
                d = emb[i] - templates[t + i]
                if d < 0:
                    d = 0 - d
                s += d
            if s < best:
                best = s
            t += size
        out[w] = best


class Matcher:
    """words: [(name, threshold, templates bytes)] as enrolled.load reads them; emb: the engine's
    embedding view; det: the detector, whose labels are the model's `scored` ones, then these
    words. update(t) after an inference offers the nearest matching word (the one nearest
    relative to its threshold; its score in hundredths: 100 at distance 0, 50 at the threshold)
    to the detector's grammar, suppressed like a model label but re-armed on its own (a winning
    _silence_ in the model's average does not re-arm it); returns its label index or -1."""

    def __init__(self, words, emb, det, scored):
        self.emb = emb
        self.det = det
        self.scored = scored
        self.n = len(words)
        self.size = len(emb)
        self.thresholds = array("i", [max(1, w[1]) for w in words])
        self.counts = bytearray(len(w[2]) // self.size for w in words)
        self.templates = bytearray(b"".join(w[2] for w in words))
        self.dist = array("i", [0] * len(words))
        self._prev = -1
        self._prev_t = 0

    def update(self, t):
        n = self.n
        dist = self.dist
        thr = self.thresholds
        _nearest(self.emb, self.templates, self.counts, n, self.size, dist)
        best = -1
        best_pct = 0
        for w in range(n):
            d = dist[w]
            if d <= thr[w]:
                pct = 100 - (50 * d) // thr[w]
                if pct > best_pct:
                    best = w
                    best_pct = pct
        if best < 0:
            return -1
        det = self.det
        if best == self._prev and ((t - self._prev_t) & TIME_MASK) <= det.suppression_ms:
            return -1
        if det.offer(self.scored + best, (best_pct * 255 + 50) // 100, best_pct, t) < 0:
            return -1
        self._prev = best
        self._prev_t = t
        return self.scored + best
