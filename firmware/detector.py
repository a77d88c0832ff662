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
# Detector._v, one array("i") of the state and the settings update() reads (as nine attributes
# they would grow its dict past 17 slots while start-up holds the most heap; configure.detector
# fills it in this order)
_HEAD = const(0)        # the oldest row in the ring
_COUNT = const(1)       # rows in the ring
_PREV = const(2)        # the label last fired (-1: none), for its suppression
_PREV_T = const(3)
_WAKE_T = const(4)      # when the wake word opened the command window; -1: not open
_ZP = const(5)          # the output's zero point
_PCT_MUL = const(6)     # score units -> hundredths of a probability, 16.16 fixed point
_WINDOW_MS = const(7)
_MINIMUM_COUNT = const(8)



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
        v = self._v
        v[_HEAD] = 0
        v[_COUNT] = 0
        v[_PREV] = -1
        v[_PREV_T] = 0
        v[_WAKE_T] = -1
        self.last_label = -1
        self.last_score = 0
        self.last_pct = 0
        self.last_time_ms = 0

    def update(self, scores, time_ms):
        """Add one row of int8 scores (a bytearray) at time_ms; return the label fired or -1."""
        v = self._v
        ring = self._ring
        sums = self._sums       # the labels' running sums, then the ring rows' times
        n = len(self.thresholds)
        cap = len(sums) - n
        # Drop results that left the window (or the oldest one if the ring is full).
        while v[_COUNT]:
            head = v[_HEAD]
            if v[_COUNT] < cap and ((time_ms - sums[n + head]) & TIME_MASK) < v[_WINDOW_MS]:
                break
            _drop(ring, sums, head * n, n)
            v[_HEAD] = head + 1 if head + 1 < cap else 0
            v[_COUNT] -= 1
        slot = v[_HEAD] + v[_COUNT]
        if slot >= cap:
            slot -= cap
        best = _add(scores, ring, sums, slot * n, n, v[_ZP])   # the row in, the top label
        best_sum = sums[best]
        sums[n + slot] = time_ms
        v[_COUNT] += 1
        if v[_COUNT] < v[_MINIMUM_COUNT]:
            return -1
        avg = best_sum // v[_COUNT]
        t = self.thresholds[best]
        if avg < t & 255:
            return -1
        if t > 255:     # _silence_, _unknown_: never fire; winning the average re-arms
            v[_PREV] = -1
            return -1
        if best == v[_PREV] and ((time_ms - v[_PREV_T]) & TIME_MASK) <= self.suppression_ms:
            return -1
        if self.offer(best, avg, (avg * v[_PCT_MUL] + 32768) >> 16, time_ms) < 0:
            return -1
        v[_PREV] = best
        v[_PREV_T] = time_ms
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
            v = self._v
            if label != self.wake and (v[_WAKE_T] < 0 or ((time_ms - v[_WAKE_T]) & TIME_MASK)
                                       > self.command_window_ms):
                v[_WAKE_T] = -1
                return -1
            # One command per wake word; the wake word (re)opens the window.
            v[_WAKE_T] = time_ms if label == self.wake else -1
        self.last_label = label
        self.last_score = value
        self.last_pct = pct
        self.last_time_ms = time_ms
        return label
