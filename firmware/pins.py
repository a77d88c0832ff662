"""GPIO actions: drive a pin or blink an LED for a while after a detection (see actions.py).

Importable everywhere: ports without machine.Pin (the unix port) only fail when a pin
action is actually created.
"""
from detector import TIME_MASK

try:
    from machine import Pin
except ImportError:
    Pin = None


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
