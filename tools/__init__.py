"""hark host tools: the `hark` command line and its helpers."""
import os
from pathlib import Path

# TensorFlow's own CPU kernel for depthwise convolutions refuses unequal strides (the tcn's
# (2, 1) time stride: "only supports equal length strides"); its oneDNN kernel takes them, and
# TensorFlow turns oneDNN on by itself only on CPUs with AVX-512. On for every CPU, before any
# module imports TensorFlow (a user's explicit setting wins).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

REPO = Path(__file__).resolve().parents[1]
FIRMWARE_DIR = REPO / "firmware"
BOARDS_DIR = REPO / "boards"
MODELS_DIR = REPO / "models"
SAMPLES_DIR = REPO / "samples"
