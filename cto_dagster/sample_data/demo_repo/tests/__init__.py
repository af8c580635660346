"""The shop's tests: `python -m unittest discover -s tests -t .` (the interpreter alone)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
