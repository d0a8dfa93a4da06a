"""``python -m linepool`` is the same as the ``linepool`` command."""

import sys

from linepool.cli import main

sys.exit(main())
