"""A teacher made of hark's own trained runs: the mean logits of several bigger models
(e.g. width 128 and 96, several seeds) label the student's augmented examples.

Capacity helps on unseen speakers, but the default must fit the pyboard's heap; an ensemble
of wider runs passes what it learned to a width-64 student through the soft labels
(`hark train --teacher-runs`). The runs label the student's own feature views, so no audio
is re-read. In cross-validation a teacher must come from the same fold as its student, or
it would have trained on the speakers the student is tested on: `{fold}` in a path is
replaced by the student's --cv-fold, and the folds are checked.
"""
import json
from pathlib import Path

import numpy as np

from .features import Normalisation


class TeacherRunError(ValueError):
    """A --teacher-runs folder that cannot teach this student."""


class RunEnsemble:
    """Finished `hark train` runs; `logits(x)` is their mean logits on raw features."""

    def __init__(self, runs):
        import keras

        from .models import logits_of

        self.members = []
        for run in runs:
            config = json.loads((Path(run) / "config.json").read_text())
            # the logits the student learns from
            logit_model = logits_of(keras.models.load_model(Path(run) / "model.keras"))
            self.members.append((Normalisation.from_dict(config["normalisation"]), logit_model))

    def logits(self, features: np.ndarray) -> np.ndarray:
        total = 0
        for norm, model in self.members:
            total = total + model.predict(norm.apply(features), batch_size=1024, verbose=0)
        return (total / len(self.members)).astype(np.float32)


def check_runs(runs, labels, spec: dict, cv_folds: int, cv_fold: int) -> None:
    """Raise TeacherRunError unless every run can teach a student with these labels, this
    front end and this cross-validation fold."""
    for run in runs:
        run = Path(run)
        if not (run / "model.keras").exists() or not (run / "config.json").exists():
            raise TeacherRunError(f"--teacher-runs {run}: not a finished `hark train` run (no "
                                  "model.keras/config.json); train it first")
        config = json.loads((run / "config.json").read_text())
        if config["labels"] != list(labels):
            raise TeacherRunError(f"--teacher-runs {run}: its labels {config['labels']} are not "
                                  f"the student's {list(labels)}")
        if config["spec"] != spec:
            changed = sorted(k for k in set(spec) | set(config["spec"])
                             if spec.get(k) != config["spec"].get(k))
            raise TeacherRunError(f"--teacher-runs {run}: its features differ from the "
                                  f"student's ({', '.join(changed)}); train both with the same "
                                  "front end options (--fmax)")
        theirs = (config.get("cv_folds", 0), config.get("cv_fold", 0) if config.get("cv_folds")
                  else 0)
        ours = (cv_folds, cv_fold if cv_folds else 0)
        if theirs != ours:
            where = (lambda f: f"cross-validation fold {f[1]} of {f[0]}" if f[0]
                     else "all speakers (no --cv-folds)")
            why = ("a teacher must not have trained on the speakers its student is tested on "
                   "(use `{fold}` in the path, e.g. runs/cv/W128/seed0_fold{fold})" if cv_folds
                   else "teach a full-data student with full-data runs")
            raise TeacherRunError(f"--teacher-runs {run} was trained for {where(theirs)}, the "
                                  f"student for {where(ours)}: {why}")
