"""``python -m attnkit``: the same command line as the ``attnkit`` script."""

import sys

from attnkit.cli import main

sys.exit(main())
