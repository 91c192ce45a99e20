"""`python3 -I -m gatekeeper` is the console script, exactly."""

from __future__ import annotations

import sys

from gatekeeper.cli import main

sys.exit(main(sys.argv[1:]))
