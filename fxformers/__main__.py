"""`python -m fxformers` runs the fxformers command."""

import sys

from .cli import main

sys.exit(main())
