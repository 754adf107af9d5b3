"""``python -m vfmlab``: the command line (how launchers start the server with Slicer's Python)."""
import sys

from .cli import main

sys.exit(main())
