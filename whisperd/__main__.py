"""`python -m whisperd` runs the daemon (the same as the `whisperd` console script)."""

import sys

from whisperd.daemon.main import main

if __name__ == "__main__":
    sys.exit(main())
