"""`hark enroll`: teach a board a new word by saying it a few times (firmware/enroll.py runs on
the board; this only starts it over the serial REPL and shows its prompts).

The board listens to the room for half a second, then prompts `say 'WORD' now (k/N)` and listens
2 s per example. Words are stored on the board (enrolled.bin) and detected from the next start of
main.py on, through the same detector, grammar and actions as the model's words. The firmware
must be deployed first (`hark deploy`). Try it without a board: `hark simulate --enroll DIR
--word NAME clip.wav` does the same in the unix port from recorded clips.
"""
import argparse

from hark import boards
from hark.cli import HarkError

ERROR = "hark: error:"


def register(sub):
    p = sub.add_parser("enroll", help="teach the board a new word by saying it a few times",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", required=True, help=f"board profile ({', '.join(boards.available())})")
    p.add_argument("--port", help="serial port (default: the only MicroPython-like USB device)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--word", help="the word to enroll (letters, digits, - or _)")
    what.add_argument("--list", action="store_true", help="list the enrolled words")
    what.add_argument("--delete", metavar="WORD", help="forget an enrolled word")
    p.add_argument("--examples", type=int, default=4,
                   help="how many times to say it (2-10, default 4: the most the thresholds were measured with)")
    p.epilog = ("examples:\n  hark enroll --board esp32s3 --word marvin\n"
                "  hark enroll --board esp32s3 --list\n  hark enroll --board esp32s3 --delete marvin")
    p.set_defaults(func=run)


def board_code(args) -> str:
    """What the board runs: one call into firmware/enroll.py, its errors as one line."""
    if args.list:
        call = "enroll.show()"
    elif args.delete:
        call = f"enroll.delete({args.delete!r})"
    else:
        if not 2 <= args.examples <= 10:
            raise HarkError(f"--examples {args.examples}: give 2 to 10")
        call = f"enroll.enroll({args.word!r}, {args.examples})"
    return ("try:\n import enroll\nexcept ImportError:\n print('" + ERROR + " the hark firmware is "
            "not on the board: run `hark deploy --board BOARD` first')\nelse:\n try:\n  " + call
            + "\n except (ValueError, OSError) as e:\n  print('" + ERROR + "', e)\n")


def run(args):
    from hark.device import Device
    boards.load(args.board)
    failed = []

    def show(line):
        if line.startswith(ERROR):
            failed.append(line[len(ERROR):].strip())
        else:
            print(line, flush=True)

    with Device(args.port) as device:
        device.read_lines(board_code(args), "enrolling", show)
    if failed:
        raise HarkError(failed[0])
    return 0
