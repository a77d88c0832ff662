"""firmware/actions.py and pins.py in the MicroPython unix port (which has no machine.Pin)."""

FAKE_PIN = """
import actions, pins
class FakePin:
    OUT = 1
    log = []
    def __init__(self, pin, mode):
        self.pin = pin
    def value(self, v):
        FakePin.log.append((self.pin, v))
pins.Pin = FakePin
"""


def run(mpy, code):
    res = mpy(code)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_print_format_and_no_allocation(mpy):
    out = run(mpy, """
import micropython
from actions import PrintAction
p = PrintAction()
def go():
    micropython.heap_lock()
    p("yes", 93, 1234)
    p("no", 5, 61007)
    p("go", 100, 0)
    micropython.heap_unlock()
go()
""")
    assert out.splitlines() == ["t=1.23s yes 0.93", "t=61.00s no 0.05", "t=0.00s go 1.00"]


def test_pin_action_without_machine_pin_fails_clearly_only_when_used(mpy):
    out = run(mpy, """
import pins
try:
    pins.PinAction(5)
except RuntimeError as e:
    print(e)
""")
    assert "pin 5 needs machine.Pin, which this port lacks" in out


def test_pin_goes_active_then_drops_after_ms(mpy):
    out = run(mpy, FAKE_PIN + """
a = pins.PinAction(7, ms=300)
b = pins.LedAction("LED", active_high=False)
print(FakePin.log)
FakePin.log.clear()
a("yes", 90, 1000); b("yes", 90, 1000)
for t in (1100, 1199, 1200, 1299, 1300, 1400):
    a.poll(t); b.poll(t)
    print(t, FakePin.log)
    FakePin.log.clear()
""")
    lines = out.splitlines()
    assert lines[0] == "[(7, 0), ('LED', 1)]"            # both start inactive
    assert lines[1:] == ["1100 [(7, 1), ('LED', 0)]",     # fired at 1000, still on
                         "1199 []", "1200 [('LED', 1)]",   # LED: 200 ms default
                         "1299 []", "1300 [(7, 0)]", "1400 []"]


def test_from_profile_maps_labels_to_pins(mpy):
    out = run(mpy, FAKE_PIN + """
acts = actions.from_profile({"led": {"pin": 2, "active_high": True},
                             "pins": {"on": 26, "off": {"pin": 27, "active_high": False, "ms": 50}}},
                            ["_silence_", "on", "off"], printer=False)
FakePin.log.clear()
acts.fire("on", 95, 0)
print(FakePin.log)
FakePin.log.clear()
acts.fire("off", 95, 0)
print(FakePin.log)
FakePin.log.clear()
acts.poll(100)
print(sorted(FakePin.log))
try:
    actions.from_profile({"pins": {"up": 3}}, ["on", "off"])
except ValueError as e:
    print(e)
""")
    lines = out.splitlines()
    assert lines[0] == "[(2, 1), (26, 1)]"
    assert lines[1] == "[(2, 1), (27, 0)]"
    assert lines[2] == "[(27, 1)]"  # only the 50 ms pin is due at 100 ms
    assert "pin for unknown label 'up'; labels are on, off" in lines[3]
