"""`make gate-seeds`: full-data seeds of the default's recipe plus a change, through the gates
that chose the default, and `python -m hark.training.gates`, which tables what they left."""
import json

from hark.training import gates

from helpers import make_train_words


def _run(folder, fired, test, validation, stream_rows, on_off=None):
    """A run folder as `make gate-seed` leaves it (only the figures the table reads)."""
    (folder / "stream_validation").mkdir(parents=True)
    (folder / "nonspeech.json").write_text(json.dumps(
        {"digital silence": [], "DC +15000 + noise": fired}))
    (folder / "eval_test.json").write_text(json.dumps({"accuracy": test}))
    (folder / "eval_validation.json").write_text(json.dumps({"accuracy": validation}))
    rows = [{"average_window_ms": w, "threshold": t, "recall": r, "fa_per_hour": fa}
            for w, t, r, fa in stream_rows]
    (folder / "stream_validation" / "stream_det.json").write_text(json.dumps({"rows": rows}))
    if on_off:
        (folder / "eval_holdout.json").write_text(json.dumps(
            {"per_class": {"on": {"recall": on_off[0]}, "off": {"recall": on_off[1]}}}))
    return folder


def test_gates_table_has_a_row_per_run_and_their_mean(tmp_path, capsys):
    stream = [(500, 0.825, 0.75, 41.0), (500, 0.9, 0.60, 8.0), (300, 0.5, 0.80, 90.0),
              (700, 0.95, 0.50, 4.0)]
    quiet = _run(tmp_path / "x_s0", [], 0.93, 0.89, stream, (0.8, 0.9))
    loud = _run(tmp_path / "x_s1", ["up@3.70"], 0.91, 0.87,
                [(500, 0.825, 0.77, 55.0), (500, 0.9, 0.70, 30.0)], (0.7, 0.8))
    assert gates.main([str(quiet), str(loud)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == gates.HEADER.splitlines()[0] and len(lines) == 5
    # best recall within 5 / 10 / 20 / 30 / 40 false accepts an hour; 90 FA/h is over every one
    assert lines[2] == ("| x_s0 | quiet | 93.00 % | 89.00 % | 75.0 %, 41 FA/h | "
                        "50.0 / 60.0 / 60.0 / 60.0 / 60.0 % | 80.0 / 90.0 % |")
    assert lines[3].startswith("| x_s1 | fires (1: DC +15000 + noise up@3.70) | 91.00 % |")
    assert "0.0 / 0.0 / 0.0 / 70.0 / 70.0 %" in lines[3]
    assert lines[4] == ("| mean of 2 | fires on 1 of 2 | 92.00 % | 88.00 % | 76.0 %, 48 FA/h | "
                        "25.0 / 30.0 / 30.0 / 65.0 / 65.0 % | 75.0 / 85.0 % |")
    assert gates.main([str(quiet), str(quiet)]) == 0       # no seed fires: not "quiet on 0 of 2"
    assert capsys.readouterr().out.splitlines()[4].startswith("| mean of 2 | quiet (all 2) |")


def test_gates_say_which_outputs_are_missing(tmp_path, capsys):
    half = tmp_path / "x_s0"
    half.mkdir()
    (half / "eval_test.json").write_text(json.dumps({"accuracy": 0.9}))
    assert gates.main([str(half)]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and "nonspeech.json" in err and "make gate-seed" in err
    assert "eval_test.json" not in err


def test_gate_seed_trains_what_train_default_trains_plus_the_change():
    """The gates judge a change to the shipped recipe: losing the tie to train-default fails."""
    gate = make_train_words("gate-seed", "RUN=runs/gates/t_s3", "SEED=3", "EXTRA=--mixup 0.3")
    default = make_train_words("train-default")
    def without(line, *options):    # drop these options and their values
        keep = []
        for word in line:
            if keep and keep[-1] in options:
                keep.pop()
            else:
                keep.append(word)
        return keep
    assert gate[gate.index("--seed") + 1] == "3"
    assert gate[gate.index("--out") + 1] == "runs/gates/t_s3"
    assert without(gate, "--seed", "--out", "--mixup") == without(default, "--seed", "--out")
