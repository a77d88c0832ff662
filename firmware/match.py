# hark enrolled words while listening (issue 16; docs/enroll.md): each hop's front-end frame
# against the frame sequences a user recorded (enroll.py), by subsequence DTW (dtw.py): a word
# matches when one of its templates' best path ending at this hop costs at most the word's
# threshold (calibrated at enrollment) per template frame. Imported only when enrolled words
# exist; update() is integer-only and allocates nothing.
from array import array

import micropython

import dtw
from detector import TIME_MASK


@micropython.viper
def _offset(src: ptr8, dst: ptr8, n: int):
    # the front end's int8 frame -> offset form (q + 128), the templates' byte form
    for i in range(n):
        dst[i] = src[i] ^ 0x80


@micropython.viper
def _fill(a: ptr16, n: int, v: int):
    for i in range(n):
        a[i] = v


@micropython.viper
def _best(cost: ptr32, limit: ptr32, owner: ptr8, n: int) -> int:
    # the template nearest relative to its limit (threshold x frames), if any is within it:
    # its word x 128 + its score in hundredths (100 at cost 0, 50 at the limit); else -1
    best = -1
    pct = 0
    for m in range(n):
        c = cost[m]
        if c <= limit[m]:
            p = 100 - (50 * c) // limit[m]
            if p > pct:
                pct = p
                best = int(owner[m]) * 128 + p
    return best


class Matcher:
    """words: [(name, threshold, frames per example, frames)] as enrolled.load reads them; det:
    the detector, whose labels are the model's `scored` ones, then these words. update(frame, t)
    each hop runs the DTW one frame on and offers the best matching word to the detector's
    grammar, suppressed like a model label but re-armed on its own (a winning _silence_ in the
    model's average does not re-arm it); returns its label index or -1."""

    def __init__(self, words, det, scored, width):
        self.det = det
        self.scored = scored
        self.width = width
        # read-only (bytes): one word's are the file's, several words' one join
        self.lengths = words[0][2] if len(words) == 1 else b"".join(w[2] for w in words)
        self.n = len(self.lengths)
        self.templates = words[0][3] if len(words) == 1 else b"".join(w[3] for w in words)
        self.owner = bytearray(self.n)
        self.limit = array("i", bytes(4 * self.n))
        m = 0
        for w, (_, thr, lengths, _) in enumerate(words):
            for n in lengths:
                self.owner[m] = w
                self.limit[m] = max(1, thr) * n
                m += 1
        self.state = bytearray(12 * len(self.templates) // width)     # dtw.py's, uint16
        _fill(self.state, len(self.state) // 2, dtw.INF)
        self.cost = array("i", bytes(4 * self.n))
        self.frame = bytearray(width)
        self._phase = 0
        self._prev = -1
        self._prev_t = 0

    def update(self, frame, t):
        _offset(frame, self.frame, self.width)
        dtw.update(self.frame, self.templates, self.lengths, self.n, self.width, self.state,
                   self._phase, self.cost)
        self._phase = self._phase + 1 if self._phase < 2 else 0
        best = _best(self.cost, self.limit, self.owner, self.n)
        if best < 0:
            return -1
        word = best >> 7
        pct = best & 127
        det = self.det
        if word == self._prev and ((t - self._prev_t) & TIME_MASK) <= det.suppression_ms:
            return -1
        if det.offer(self.scored + word, pct, t) < 0:
            return -1
        self._prev = word
        self._prev_t = t
        return self.scored + word
