"""What happens on a detection: print it, raise a GPIO pin, blink an LED.

An action is any callable `action(name, pct, time_ms)` (pct: probability in
hundredths) with an optional `poll(time_ms)` that main calls every hop, so pins
drop again without sleeping or timers. `Actions` maps label -> actions; change
the mapping in the board profile ("actions") or build your own dict.

Imports everywhere: ports without machine.Pin (the unix port) only fail when a
pin action is actually created.
"""
from detector import TIME_MASK

try:
    from machine import Pin
except ImportError:
    Pin = None


def _print_2(n):
    """Two zero-padded decimal digits, without building a string."""
    if n < 10:
        print("0", end="")
    print(n, end="")


class PrintAction:
    """Prints `t=1.23s yes 0.93`, the line `hark simulate` parses. Allocation-free."""

    def __call__(self, name, pct, time_ms):
        print("t=", end="")
        print(time_ms // 1000, end=".")
        _print_2((time_ms % 1000) // 10)
        print("s", name, end=" ")
        print(pct // 100, end=".")
        _print_2(pct % 100)
        print()


class PinAction:
    """Drives a GPIO pin active for `ms` after a detection."""

    def __init__(self, pin, ms=500, active_high=True):
        if Pin is None:
            raise RuntimeError("actions: pin %r needs machine.Pin, which this port lacks; "
                               "remove 'actions' pins/led from the board profile to run here" % (pin,))
        self.pin = Pin(pin, Pin.OUT)
        self.ms = ms
        self._on = 1 if active_high else 0
        self.pin.value(1 - self._on)
        self._active = False
        self._until = 0

    def __call__(self, name, pct, time_ms):
        self.pin.value(self._on)
        self._active = True
        self._until = time_ms

    def poll(self, time_ms):
        if self._active and ((time_ms - self._until) & TIME_MASK) >= self.ms:
            self.pin.value(1 - self._on)
            self._active = False


class LedAction(PinAction):
    """A short blink on the board LED for every detection."""

    def __init__(self, pin, ms=200, active_high=True):
        super().__init__(pin, ms, active_high)


class Actions:
    """Dispatch: `every` actions run on any detection, `by_label[name]` only on that label."""

    def __init__(self, by_label=None, every=()):
        self.by_label = {}
        for name, acts in (by_label or {}).items():
            self.by_label[name] = list(acts) if isinstance(acts, (list, tuple)) else [acts]
        self.every = list(every)
        self._polled = [a for a in self.every if hasattr(a, "poll")]
        for acts in self.by_label.values():
            self._polled += [a for a in acts if hasattr(a, "poll") and a not in self._polled]

    def fire(self, name, pct, time_ms):
        for action in self.every:
            action(name, pct, time_ms)
        acts = self.by_label.get(name)
        if acts:
            for action in acts:
                action(name, pct, time_ms)

    def poll(self, time_ms):
        for action in self._polled:
            action.poll(time_ms)


def from_profile(spec, labels, printer=True):
    """Actions from a board profile's "actions": {"led": {"pin", "active_high", "ms"},
    "pins": {label: pin or {"pin", "active_high", "ms"}}}."""
    spec = spec or {}
    every = [PrintAction()] if printer else []
    led = spec.get("led")
    if led:
        every.append(LedAction(led["pin"], led.get("ms", 200), led.get("active_high", True)))
    by_label = {}
    for name, pin in (spec.get("pins") or {}).items():
        if name not in labels:
            raise ValueError("actions: pin for unknown label %r; labels are %s" % (name, ", ".join(labels)))
        if isinstance(pin, dict):
            by_label[name] = PinAction(pin["pin"], pin.get("ms", 500), pin.get("active_high", True))
        else:
            by_label[name] = PinAction(pin)
    return Actions(by_label, every)
