"""firmware/detector.py in the real MicroPython unix port: smoothing, thresholds,
suppression, minimum count, ignored labels, grammar modes, no allocation."""
import json

import pytest

LABELS = ["_silence_", "_unknown_", "yes", "no", "go"]
DEFAULTS = {"average_window_ms": 1000, "threshold": 0.8, "suppression_ms": 1500, "minimum_count": 3}

RUN = """
import json, sys
from detector import Detector
args = json.loads(sys.stdin.read())  # argv items over 255 bytes crash the unix port
det = Detector(args["labels"], args["config"], 1 / 256, -128, args["period"], args["grammar"])
events = []
t = args["t0"]
for row in args["rows"]:
    r = bytearray(row)
    if det.update(r, t) >= 0:
        events.append([t, args["labels"][det.last_label], det.last_pct])
    t = (t + args["period"]) & 0x1FFFFFFF
print(json.dumps(events))
"""


def row(label, p):
    """int8 softmax scores (as bytes) with `label` at probability p, the rest on _silence_."""
    probs = [0.0] * len(LABELS)
    probs[LABELS.index(label)] = p
    probs[0] += 1.0 - p
    return [(min(255, round(x * 256)) - 128) & 0xFF for x in probs]


def steps(*segments, period=20):
    """("yes", 0.95, 600) -> 30 rows of yes at 0.95."""
    rows = []
    for label, p, ms in segments:
        rows += [row(label, p)] * (ms // period)
    return rows


def detect(mpy, rows, config=None, grammar=None, period=20, t0=0):
    cfg = dict(DEFAULTS, **(config or {}))
    args = {"labels": LABELS, "config": cfg, "grammar": grammar, "period": period,
            "rows": rows, "t0": t0}
    res = mpy(RUN, stdin=json.dumps(args))
    assert res.returncode == 0, res.stderr
    return [tuple(e) for e in json.loads(res.stdout)]


def test_sustained_word_fires_once_after_minimum_count(mpy):
    events = detect(mpy, steps(("yes", 0.95, 1000)))
    assert [(t, name) for t, name, _ in events] == [(40, "yes")]  # third result, t=0,20,40
    assert events[0][2] == 95      # the average's probability, in hundredths


def test_smoothing_needs_most_of_the_window(mpy):
    # One loud result among silence never wins the average...
    assert detect(mpy, steps(("_silence_", 1.0, 1000), ("yes", 1.0, 20), ("_silence_", 1.0, 1000))) == []
    # ...a word does once it fills >= 80% of the 1 s window: 41 of 50 results.
    events = detect(mpy, steps(("_silence_", 1.0, 1000), ("yes", 1.0, 2000)))
    assert [(t, n) for t, n, _ in events] == [(1000 + 40 * 20, "yes")]


def test_minimum_count(mpy):
    events = detect(mpy, steps(("yes", 1.0, 1000)), {"minimum_count": 7})
    assert events[0][0] == 6 * 20
    # Never more than the window can hold: 5 results per 1 s at 200 ms.
    events = detect(mpy, steps(("yes", 1.0, 2000), period=200), {"minimum_count": 50}, period=200)
    assert events[0][0] == 4 * 200


def test_threshold_default_per_label_and_score_units(mpy):
    quiet_yes = steps(("yes", 0.75, 1500))
    assert detect(mpy, quiet_yes) == []
    assert len(detect(mpy, quiet_yes, {"thresholds": {"yes": 0.7}})) == 1
    assert len(detect(mpy, quiet_yes, {"thresholds": {"yes": 180}})) == 1   # 180/256 = 0.70
    assert detect(mpy, quiet_yes, {"thresholds": {"yes": 200}}) == []       # 200/256 = 0.78
    assert detect(mpy, steps(("no", 0.9, 2000)), {"thresholds": {"no": 0.95}}) == []


def test_suppression_of_the_same_label(mpy):
    events = detect(mpy, steps(("yes", 1.0, 5000)))
    times = [t for t, _, _ in events]
    assert times == [40, 40 + 1520, 40 + 2 * 1520, 40 + 3 * 1520]
    # A different label is not suppressed by the previous detection.
    events = detect(mpy, steps(("yes", 1.0, 600), ("no", 1.0, 1200)))
    assert [n for _, n, _ in events] == ["yes", "no"]
    assert events[1][0] - events[0][0] < 1500


def test_silence_and_unknown_never_fire_but_rearm(mpy):
    assert detect(mpy, steps(("_silence_", 1.0, 3000), ("_unknown_", 1.0, 3000))) == []
    word_silence_word = steps(("yes", 1.0, 400), ("_silence_", 1.0, 1500), ("yes", 1.0, 1500))
    assert len(detect(mpy, word_silence_word, {"suppression_ms": 10000})) == 2
    word_word = steps(("yes", 1.0, 400), ("_unknown_", 0.5, 1500), ("yes", 1.0, 1500))
    assert len(detect(mpy, word_word, {"suppression_ms": 10000})) == 1


def test_grammar_wake_only(mpy):
    rows = steps(("yes", 1.0, 1000), ("go", 1.0, 1000), ("no", 1.0, 1000))
    events = detect(mpy, rows, grammar={"mode": "wake", "wake_word": "go", "command_window_ms": 0})
    assert [n for _, n, _ in events] == ["go"]


def test_grammar_wake_then_command(mpy):
    grammar = {"mode": "wake+command", "wake_word": "go", "command_window_ms": 2000}
    rows = steps(("yes", 1.0, 1000),                       # before the wake word: ignored
                 ("go", 1.0, 1000), ("yes", 1.0, 1000),    # wake, command in the window
                 ("no", 1.0, 1000),                         # second command: window used up
                 ("go", 1.0, 1000), ("_silence_", 1.0, 2500), ("no", 1.0, 1000))  # too late
    events = detect(mpy, rows, grammar=grammar)
    assert [n for _, n, _ in events] == ["go", "yes", "go"]
    assert detect(mpy, steps(("go", 1.0, 800), ("no", 1.0, 1000)), grammar=grammar)[1][1] == "no"


def test_commands_own_average_window(mpy):
    """After the wake word a wrong command that leads for a moment fires within a short
    window; the commands' own longer window waits for the said one. The wake word keeps the
    short window either way."""
    grammar = {"mode": "wake+command", "wake_word": "go", "command_window_ms": 3000}
    short = {"average_window_ms": 200, "threshold": 0.5}
    rows = steps(("_silence_", 1.0, 400), ("go", 1.0, 600), ("no", 1.0, 200), ("yes", 1.0, 1200),
                 ("_silence_", 1.0, 400))
    one = detect(mpy, rows, short, grammar)
    assert [n for _, n, _ in one] == ["go", "no"]
    two = detect(mpy, rows, dict(short, command_average_ms=1000), grammar)
    assert [n for _, n, _ in two] == ["go", "yes"]
    assert two[0][0] == one[0][0] == 400 + 100          # the wake word at the same time
    assert one[1][0] == 400 + 600 + 100                 # no: 6 of the 10 rows of 200 ms
    assert two[1][0] == 400 + 600 + 200 + 500           # yes: 26 of the 50 rows of 1 s
    # The same window for both (the default) is the one window.
    assert detect(mpy, rows, dict(short, command_average_ms=200), grammar) == one


def test_timestamps_wrap(mpy):
    """Times are ms modulo 2**29: suppression still works across the wrap."""
    t0 = 0x1FFFFFFF - 1000
    events = detect(mpy, steps(("yes", 1.0, 3500)), t0=t0)
    gaps = [(b[0] - a[0]) & 0x1FFFFFFF for a, b in zip(events, events[1:])]
    assert len(events) == 3 and gaps == [1520, 1520]


@pytest.mark.parametrize("config,grammar,message", [
    ({"thresholds": {"maybe": 0.5}}, None, "unknown label 'maybe'"),
    ({}, {"mode": "wake", "wake_word": None}, "needs a wake_word"),
    ({}, {"mode": "wake", "wake_word": "_silence_"}, "needs a wake_word"),
    ({}, {"mode": "chatty"}, "grammar mode 'chatty'"),
    ({"command_average_ms": 2000}, None, "command_average_ms 2000 (wake+command grammar only)"),
    ({"command_average_ms": 0}, {"mode": "wake+command", "wake_word": "go"},
     "each must be > 0"),
])
def test_config_errors(mpy, config, grammar, message):
    res = mpy(RUN, stdin=json.dumps({"labels": LABELS, "config": dict(DEFAULTS, **config),
                                     "grammar": grammar, "period": 20, "rows": [], "t0": 0}))
    assert res.returncode != 0 and message in res.stdout + res.stderr


@pytest.mark.parametrize("command_ms", [1000, 1500])
def test_update_allocates_nothing(mpy, command_ms):
    code = """
import micropython
from detector import Detector
det = Detector(["_silence_", "_unknown_", "yes", "no"], {"thresholds": {"no": 0.6},
               "command_average_ms": COMMAND_MS}, 1 / 256, -128,
               20, {"mode": "wake+command", "wake_word": "yes", "command_window_ms": 3000})
rows = [bytearray([0x7f, 0x80, 0x80, 0x80]), bytearray([0x80, 0x80, 0x7f, 0x80]),
        bytearray([0x80, 0x80, 0x80, 0x7f])]
def loop():  # locals, so the loop itself adds nothing to the globals dict
    fired = 0
    t = 0
    micropython.heap_lock()
    for i in range(3000):
        if det.update(rows[(i // 100) % 3], t) >= 0:
            fired += 1
        t += 20
    micropython.heap_unlock()
    return fired
print(loop())
""".replace("COMMAND_MS", str(command_ms))
    res = mpy(code, heapsize="64K")
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) >= 10
