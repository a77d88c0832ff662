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
    if period_ms <= 0:
        raise ValueError("detector: period_ms must be > 0, got %r" % (period_ms,))
    window_ms = int(config.get("average_window_ms", 1000))
    det.suppression_ms = int(config.get("suppression_ms", 1500))
    if window_ms <= 0:
        raise ValueError("detector: average_window_ms must be > 0, got %d" % window_ms)
    # Results that fit in the window; ask for no more than can ever be there.
    fit = max(1, (window_ms + period_ms - 1) // period_ms)
    # detector._v: head, count, prev, prev_t, wake_t (reset() sets them), the zero point,
    # score units -> hundredths of a probability as a 16.16 fixed-point factor, the window,
    # the minimum count
    det._v = array("i", (0, 0, -1, 0, -1, int(zero_point), int(scale * 100 * 65536 + 0.5),
                         window_ms, max(1, min(int(config.get("minimum_count", 3)), fit))))
    cap = fit + 1                   # the ring's rows

    default = to_score(config.get("threshold", 0.8), scale)
    det.thresholds = array("H", [default] * n)
    for name, value in (config.get("thresholds") or {}).items():
        if name not in labels[:n]:
            raise ValueError("detector: threshold for unknown label %r; labels are %s"
                             % (name, ", ".join(labels[:n])))
        det.thresholds[labels.index(name)] = to_score(value, scale)
    for i in range(n):
        if labels[i].startswith("_"):
            det.thresholds[i] += 256    # never fires (Detector.update reads bit 8)

    grammar = grammar or {}
    mode = grammar.get("mode", "commands")
    if mode not in MODES:
        raise ValueError("detector: grammar mode %r; use one of %s" % (mode, ", ".join(MODES)))
    det.mode = mode
    det.wake = -1
    if mode != "commands":
        word = grammar.get("wake_word")
        if word not in labels or word.startswith("_"):
            raise ValueError("detector: grammar mode %r needs a wake_word among the model's "
                             "labels (%s), got %r" % (mode, ", ".join(labels), word))
        det.wake = labels.index(word)
    det.command_window_ms = int(grammar.get("command_window_ms", 3000))

    det._ring = bytearray(cap * n)
    det._sums = array("i", [0] * (n + cap))    # the labels' sums, then the rows' times
    det.reset()
    _done()
