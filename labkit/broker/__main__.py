"""``python -m labkit.broker``: the same as ``labkit broker``."""

import sys

from labkit.broker.launcher import main

if __name__ == "__main__":
    sys.exit(main())
