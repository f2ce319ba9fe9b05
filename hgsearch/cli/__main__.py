"""``python -m hgsearch.cli``: the ``hgsearch`` command."""

import sys

from hgsearch.cli import main

if __name__ == "__main__":
    sys.exit(main())
