"""TensorFlow's start-up log (oneDNN, CPU features, absl) is news for its developers, not for
a hark user: it is silenced unless `--verbose` is given.

The lines come from C++ while `import tensorflow` runs, before TF_CPP_MIN_LOG_LEVEL is read,
so that import runs with the process's stderr (file descriptor 2) pointed at /dev/null.
"""
import importlib.abc
import importlib.util
import os
import sys
from contextlib import contextmanager


@contextmanager
def native_stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)          # once: the real finders do the work
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec(module):
            with native_stderr_silenced():
                exec_module(module)
        spec.loader.exec_module = quiet_exec
        return spec


def silence_tensorflow():
    """Call before anything imports TensorFlow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())
