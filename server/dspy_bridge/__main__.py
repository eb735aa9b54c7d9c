"""`python -m dspy_bridge` is `dspy-bridge`."""

import sys

from dspy_bridge.cli import main

sys.exit(main())
