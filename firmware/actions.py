"""What happens on a detection: print it, raise a GPIO pin, blink an LED.

An action is any callable `action(name, pct, time_ms)` (pct: probability in
hundredths) with an optional `poll(time_ms)` that main calls every hop, so pins
drop again without sleeping or timers. `Actions` maps label -> actions; change
the mapping in the board profile ("actions") or build your own dict.
The pin and LED actions live in pins.py, loaded only when the profile asks for one.
"""

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
    "pins": {label: pin or {"pin", "active_high", "ms"}}} (actsetup.actions: set-up code)."""
    import actsetup
    return actsetup.actions(spec, labels, printer)
