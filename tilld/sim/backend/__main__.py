"""``python -m tilld.sim.backend``."""

import sys

from .command import main

sys.exit(main())
