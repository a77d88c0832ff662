"""hark host tools: the `hark` command line and its helpers."""
from pathlib import Path

__version__ = "0.1.0"

REPO = Path(__file__).resolve().parents[1]
FIRMWARE_DIR = REPO / "firmware"
BOARDS_DIR = REPO / "boards"
MODELS_DIR = REPO / "models"
SAMPLES_DIR = REPO / "samples"
