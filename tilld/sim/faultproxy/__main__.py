"""``python -m tilld.sim.faultproxy``: the proxy on the command line."""

import sys

from .command import main

sys.exit(main())
