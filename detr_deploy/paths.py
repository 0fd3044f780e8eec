"""Repository locations, resolved from this file so nothing depends on the working directory."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
SAMPLES_DIR = DATA_DIR / "samples"
MODELS_DIR = DATA_DIR / "models"
CPP_DIR = REPO_ROOT / "cpp"
BUILD_DIR = REPO_ROOT / "build"  # generated artefacts (gitignored)


def relative(path) -> str:
    """``path`` relative to the repository root when inside it (for printing without absolute paths)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
