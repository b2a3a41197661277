"""``python -m labkit <command>``: the same as the ``labkit`` command."""

import sys

from labkit.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
