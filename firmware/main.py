"""hark's entry point: at boot on a board, or `micropython main.py --help`-style on unix.

Kept to a few lines because a board compiles main.py from source at every boot
(costing heap); the pipeline lives in runtime.py, which deploy precompiles.
"""
import sys

import runtime

_code = runtime.main(sys.argv[1:])
if _code:
    sys.exit(_code)
