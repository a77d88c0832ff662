"""Set-up of the detector: the checks of the detector settings, and what its per-hop code
reads. detector.Detector calls it (the actions' set-up is actsetup.py: the actions are made last,
when a module this size finds no hole). It ends by removing this module from sys.modules
(_done), so its code and messages leave the heap as soon as the caller lets go of it: none of it
runs while audio flows. The front end's set-up is fesetup.py: the front end is made while start-up still holds
the most heap, so it loads no more set-up code than its own. (Every name a loaded module uses
stays in the qstr pool for good, so what only the host needs is not here either: wavheader.py.)
"""
import sys
from array import array

# the grammar modes (detector.Detector.offer compares its mode with them)
MODES = ("commands", "wake", "wake+command")


def _done():
    sys.modules.pop(__name__, None)


def to_score(value, scale):
    """A threshold from the config in score units: floats <= 1 are probabilities."""
    if isinstance(value, float) or value <= 1:
        return min(255, max(0, int(value / scale + 0.5)))
    return min(255, int(value))


def detector(det, labels, config, scale, zero_point, period_ms, grammar, scored):
    """Set up detector.Detector `det` (its docstring has the arguments)."""
    n = len(labels) if scored is None else scored
    if n == 0:
        raise ValueError("detector: the model has no labels")
    window_ms = int(config.get("average_window_ms", 1000))
    command_ms = int(config.get("command_average_ms", window_ms))
    det.suppression_ms = int(config.get("suppression_ms", 1500))
    grammar = grammar or {}
    mode = grammar.get("mode", "commands")
    if mode not in MODES:
        raise ValueError("detector: grammar mode %r; use one of %s" % (mode, ", ".join(MODES)))
    if min(window_ms, command_ms, period_ms) <= 0 or command_ms != window_ms and mode != MODES[2]:
        raise ValueError("detector: average_window_ms %d, command_average_ms %d (wake+command "
                         "grammar only), period_ms %d: each must be > 0"
                         % (window_ms, command_ms, period_ms))
    # Results that fit in a window; ask for no more than can ever be there.
    fit = max(1, (min(window_ms, command_ms) + period_ms - 1) // period_ms)
    # detector._v: next, the two windows' counts, their lengths, prev, prev_t, wake_t, the zero
    # point, score units -> hundredths of a probability as a 16.16 fixed-point factor, the
    # minimum count
    det._v = array("i", (0, 0, 0, window_ms, command_ms, -1, 0, -1, int(zero_point),
                         int(scale * 100 * 65536 + 0.5),
                         max(1, min(int(config.get("minimum_count", 3)), fit))))
    cap = max(1, (max(window_ms, command_ms) + period_ms - 1) // period_ms) + 1   # ring rows
    det._ring = bytearray(cap * n)
    # the two windows' sums, then the rows' times: sized once, no temporary; then zero
    det._sums = sums = array("i", range(n + n + cap))
    for i in range(n + n + cap):
        sums[i] = 0

    default = to_score(config.get("threshold", 0.8), scale)
    det.thresholds = thresholds = array("H", [default] * n)
    for name, value in (config.get("thresholds") or {}).items():
        i = labels.index(name) if name in labels else n
        if i >= n:
            raise ValueError("detector: threshold for unknown label %r; labels are %s"
                             % (name, ", ".join(labels[:n])))
        thresholds[i] = to_score(value, scale)
    for i in range(n):
        if labels[i].startswith("_"):
            thresholds[i] += 256    # never fires (Detector.update reads bit 8)

    det.mode = mode
    det.wake = -1
    if mode != "commands":
        word = grammar.get("wake_word")
        if word not in labels or word.startswith("_"):
            raise ValueError("detector: grammar mode %r needs a wake_word among the model's "
                             "labels (%s), got %r" % (mode, ", ".join(labels), word))
        det.wake = labels.index(word)
    det.command_window_ms = int(grammar.get("command_window_ms", 3000))

    det.last_label = -1     # the last detection: its label and probability in hundredths
    det.last_pct = 0
    _done()
