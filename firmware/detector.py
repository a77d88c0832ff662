"""Turn the stream of per-label model scores into discrete detections.

Modelled on TFLite Micro's RecognizeCommands: average each label's score over
the last `average_window_ms`, take the top label, fire when its average clears
its threshold, then stay quiet about that label for `suppression_ms`. Labels
starting with "_" (_silence_, _unknown_) never fire; when one of them wins the
average the detector re-arms, so "yes ... silence ... yes" fires twice.

The wake+command grammar may average the commands over a window of their own
(`command_average_ms`, default the same): the wake word keeps the short window
that hears it soonest, a longer one lets the said command outweigh a wrong one
that leads for a moment. Both are running sums over one ring of rows.

Scores are kept in "score units": q - output_zero_point clamped to 0..255, so
for the usual softmax output (scale 1/256, zero point -128) 255 means p ~= 1.
Thresholds may be given as probabilities (floats <= 1), converted once at set-up
(configure.py, with the other checks),
or directly in score units (ints > 1).

update() is integer-only and allocates nothing: the windows are a preallocated
ring of score rows with running per-label sums.
"""
import micropython
from micropython import const

# Timestamps are ms modulo 2**29 (~6.2 days) so they stay small ints on 32-bit
# boards; all comparisons go through differences masked with this.
TIME_MASK = const(0x1FFFFFFF)
# Detector._v, one array("i") of the state and the settings update() reads (as attributes
# they would grow its dict past 17 slots while start-up holds the most heap; configure.detector
# fills it in this order)
_NEXT = const(0)        # the ring row the next scores go to
_COUNT = const(1)       # rows in window w (the newest ones): _COUNT + w
_COMMAND_COUNT = const(2)
_WINDOW_MS = const(3)   # window w's length: _WINDOW_MS + w (0: the average, 1: the commands')
_COMMAND_MS = const(4)
_PREV = const(5)        # the label last fired (-1: none), for its suppression
_PREV_T = const(6)
_WAKE_T = const(7)      # when the wake word opened the command window; -1: not open
_ZP = const(8)          # the output's zero point
_PCT_MUL = const(9)     # score units -> hundredths of a probability, 16.16 fixed point
_MINIMUM_COUNT = const(10)


@micropython.viper
def _drop(a: ptr8, b: ptr32, base: int, n: int, at: int):
    """Take ring row `base` (n score units from there) out of the running sums at b[at:]."""
    for i in range(n):
        b[at + i] = b[at + i] - a[base + i]


@micropython.viper
def _add(scores: ptr8, a: ptr8, b: ptr32, base: int, n: int, zp: int) -> int:
    """Write one row of int8 scores as score units (q - zp clamped to 0..255) into the ring at
    `base` and add it to both windows' running sums (b[:n], b[n:]); returns each window's top
    label (the first of equals), window 0's + 256 * window 1's."""
    best = 0
    top = -1
    command = 0
    command_top = -1
    for i in range(n):
        v = ((scores[i] ^ 0x80) - 0x80) - zp
        if v < 0:
            v = 0
        elif v > 255:
            v = 255
        a[base + i] = v
        s = b[i] + v
        b[i] = s
        if s > top:
            best = i
            top = s
        s = b[n + i] + v
        b[n + i] = s
        if s > command_top:
            command = i
            command_top = s
    return best + 256 * command


class Detector:
    """Smoothing, thresholds, suppression and grammar over int8 score rows.

    config: the blob's meta["detector"] with the board's overrides applied
    (average_window_ms, threshold, thresholds {label: t}, suppression_ms,
    minimum_count, command_average_ms). grammar: {"mode": "commands"|"wake"|"wake+command",
    "wake_word": label, "command_window_ms": ms}. period_ms is the time between
    update() calls; it sizes the ring. scored: how many of the labels the model scores (the
    rest are enrolled words, match.py, which offers their detections to the same grammar);
    default all.
    """

    def __init__(self, labels, config, scale, zero_point, period_ms=20, grammar=None, scored=None):
        import configure        # the checks and set-up: start-up drops that module's code
        configure.detector(self, labels, config, scale, zero_point, period_ms, grammar, scored)

    def update(self, scores, time_ms):
        """Add one row of int8 scores (a bytearray) at time_ms; return the label fired or -1."""
        v = self._v
        ring = self._ring
        sums = self._sums       # window 0's running sums (the average), window 1's (the
        n = len(self.thresholds)    # commands'), then the ring rows' times
        cap = len(sums) - n - n
        # Rows that left a window (or the oldest one if the ring is full) leave its sums.
        for w in (0, 1):
            while v[_COUNT + w]:
                oldest = v[_NEXT] - v[_COUNT + w]
                if oldest < 0:
                    oldest += cap
                if v[_COUNT + w] < cap and ((time_ms - sums[n + n + oldest]) & TIME_MASK
                                            ) < v[_WINDOW_MS + w]:
                    break
                _drop(ring, sums, oldest * n, n, w * n)
                v[_COUNT + w] -= 1
        slot = v[_NEXT]
        tops = _add(scores, ring, sums, slot * n, n, v[_ZP])   # the row in, each window's top
        sums[n + n + slot] = time_ms
        v[_NEXT] = slot + 1 if slot + 1 < cap else 0
        v[_COUNT] += 1
        v[_COMMAND_COUNT] += 1
        # The average window decides the wake word and re-arms, the commands' window decides
        # the commands (the same window unless command_average_ms sets another).
        thresholds = self.thresholds
        for w in (0, 1):
            label = tops >> 8 if w else tops & 255
            t = thresholds[label]
            if (label == self.wake or t > 255) != (w == 0) or v[_COUNT + w] < v[_MINIMUM_COUNT]:
                continue
            avg = sums[w * n + label] // v[_COUNT + w]
            if avg < t & 255:
                continue
            if t > 255:     # _silence_, _unknown_: never fire; winning the average re-arms
                v[_PREV] = -1
                continue
            if label == v[_PREV] and ((time_ms - v[_PREV_T]) & TIME_MASK) <= self.suppression_ms:
                continue
            if self.offer(label, (avg * v[_PCT_MUL] + 32768) >> 16, time_ms) < 0:
                continue
            v[_PREV] = label
            v[_PREV_T] = time_ms
            return label
        return -1

    def offer(self, label, pct, time_ms):
        """The grammar: whether `label` (its average, pct, in hundredths of a probability) may
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
        self.last_pct = pct
        return label
