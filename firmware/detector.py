"""Turn the stream of per-label model scores into discrete detections.

Modelled on TFLite Micro's RecognizeCommands: average each label's score over
the last `average_window_ms`, take the top label, fire when its average clears
its threshold, then stay quiet about that label for `suppression_ms`. Labels
starting with "_" (_silence_, _unknown_) never fire; when one of them wins the
average the detector re-arms, so "yes ... silence ... yes" fires twice.

Scores are kept in "score units": q - output_zero_point clamped to 0..255, so
for the usual softmax output (scale 1/256, zero point -128) 255 means p ~= 1.
Thresholds may be given as probabilities (floats <= 1), converted once at set-up
(configure.py, with the other checks),
or directly in score units (ints > 1).

update() is integer-only and allocates nothing: the window is a preallocated
ring of score rows with running per-label sums.
"""
import micropython
from micropython import const

# Timestamps are ms modulo 2**29 (~6.2 days) so they stay small ints on 32-bit
# boards; all comparisons go through differences masked with this.
TIME_MASK = const(0x1FFFFFFF)



@micropython.viper
def _drop(a: ptr8, b: ptr32, base: int, n: int):
    """Take ring row `base` (n score units from there) out of the running sums."""
    for i in range(n):
        b[i] = b[i] - a[base + i]


@micropython.viper
def _add(scores: ptr8, a: ptr8, b: ptr32, base: int, n: int, zp: int) -> int:
    """Write one row of int8 scores as score units (q - zp clamped to 0..255) into the ring at
    `base` and add it to the running sums; returns the top label (the first of equals)."""
    best = 0
    top = -1
    for i in range(n):
        v = ((scores[i] ^ 0x80) - 0x80) - zp
        if v < 0:
            v = 0
        elif v > 255:
            v = 255
        a[base + i] = v
        v += b[i]
        b[i] = v
        if v > top:
            best = i
            top = v
    return best


class Detector:
    """Smoothing, thresholds, suppression and grammar over int8 score rows.

    config: the blob's meta["detector"] with the board's overrides applied
    (average_window_ms, threshold, thresholds {label: t}, suppression_ms,
    minimum_count). grammar: {"mode": "commands"|"wake"|"wake+command",
    "wake_word": label, "command_window_ms": ms}. period_ms is the time between
    update() calls; it sizes the ring. scored: how many of the labels the model scores (the
    rest are enrolled words, match.py, which offers their detections to the same grammar);
    default all.
    """

    def __init__(self, labels, config, scale, zero_point, period_ms=20, grammar=None, scored=None):
        import configure        # the checks and set-up: start-up drops that module's code
        configure.detector(self, labels, config, scale, zero_point, period_ms, grammar, scored)

    def reset(self):
        """Forget the window and any pending suppression or wake state."""
        sums = self._sums
        for i in range(len(sums)):
            sums[i] = 0
        self._head = 0
        self._count = 0
        self._prev = -1
        self._prev_t = 0
        self._wake_t = -1       # when the wake word opened the command window; -1: not open
        self.last_label = -1
        self.last_score = 0
        self.last_pct = 0
        self.last_time_ms = 0

    def update(self, scores, time_ms):
        """Add one row of int8 scores (a bytearray) at time_ms; return the label fired or -1."""
        ring = self._ring
        sums = self._sums
        times = self._times
        n = len(sums)
        cap = len(times)
        # Drop results that left the window (or the oldest one if the ring is full).
        while self._count:
            head = self._head
            if self._count < cap and ((time_ms - times[head]) & TIME_MASK) < self.window_ms:
                break
            _drop(ring, sums, head * n, n)
            self._head = head + 1 if head + 1 < cap else 0
            self._count -= 1
        slot = self._head + self._count
        if slot >= cap:
            slot -= cap
        best = _add(scores, ring, sums, slot * n, n, self._zp)   # the row in, the top label
        best_sum = sums[best]
        times[slot] = time_ms
        self._count += 1
        if self._count < self.minimum_count:
            return -1
        avg = best_sum // self._count
        if avg < self.thresholds[best]:
            return -1
        if self._ignored[best]:
            self._prev = -1
            return -1
        if best == self._prev and ((time_ms - self._prev_t) & TIME_MASK) <= self.suppression_ms:
            return -1
        if self.offer(best, avg, (avg * self._pct_mul + 32768) >> 16, time_ms) < 0:
            return -1
        self._prev = best
        self._prev_t = time_ms
        return best

    def offer(self, label, value, pct, time_ms):
        """The grammar: whether `label` (score `value` in score units, pct in hundredths) may
        fire at time_ms; if so it is the last detection and returned, else -1. update() calls it
        for a model label past its suppression; match.py for an enrolled word (index >= the
        scored labels), which it suppresses itself."""
        mode = self.mode
        if mode == "wake" and label != self.wake:
            return -1
        if mode == "wake+command":
            if label != self.wake and (self._wake_t < 0 or ((time_ms - self._wake_t) & TIME_MASK)
                                       > self.command_window_ms):
                self._wake_t = -1
                return -1
            # One command per wake word; the wake word (re)opens the window.
            self._wake_t = time_ms if label == self.wake else -1
        self.last_label = label
        self.last_score = value
        self.last_pct = pct
        self.last_time_ms = time_ms
        return label
