"""Set-up of the actions (actions.from_profile): the profile's actions checked and made.
The module removes itself from sys.modules when done, so its code leaves the heap."""
import sys


def _done():
    sys.modules.pop(__name__, None)


def actions(spec, labels, printer):
    """actions.from_profile: the profile's actions checked and made."""
    from actions import Actions, PrintAction
    spec = spec or {}
    every = [PrintAction()] if printer else []
    led = spec.get("led")
    if led:
        from pins import LedAction
        every.append(LedAction(led["pin"], led.get("ms", 200), led.get("active_high", True)))
    by_label = {}
    for name, pin in (spec.get("pins") or {}).items():
        if name not in labels:
            raise ValueError("actions: pin for unknown label %r; labels are %s" % (name, ", ".join(labels)))
        from pins import PinAction
        if isinstance(pin, dict):
            by_label[name] = PinAction(pin["pin"], pin.get("ms", 500), pin.get("active_high", True))
        else:
            by_label[name] = PinAction(pin)
    _done()
    return Actions(by_label, every)
