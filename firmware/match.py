# hark enrolled words while listening: the model's embedding (engine .embedding, the pooled
# features before the classifier) against the int8 templates a user recorded (enroll.py).
# A word matches when the L1 distance to its nearest template is within the word's threshold
# (calibrated at enrollment from the spread of its examples). Imported only when enrolled words
# exist; update() is integer-only and allocates nothing.
from array import array

import micropython


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
    """words: [(name, threshold, templates bytes)] as enroll.load reads them. update(embedding)
    returns the index of the matching word (the one nearest relative to its threshold) or -1;
    .pct is then its score in hundredths (100 at distance 0, 50 at the threshold)."""

    def __init__(self, words, size):
        self.names = [w[0] for w in words]
        self.n = len(words)
        self.size = size
        self.thresholds = array("i", [max(1, w[1]) for w in words])
        self.counts = bytearray(len(w[2]) // size for w in words)
        self.templates = bytearray(b"".join(w[2] for w in words))
        self.dist = array("i", [0] * len(words))
        self.pct = 0

    def update(self, emb):
        n = self.n
        dist = self.dist
        thr = self.thresholds
        _nearest(emb, self.templates, self.counts, n, self.size, dist)
        best = -1
        best_pct = 0
        for w in range(n):
            d = dist[w]
            if d <= thr[w]:
                pct = 100 - (50 * d) // thr[w]
                if pct > best_pct:
                    best = w
                    best_pct = pct
        self.pct = best_pct
        return best
