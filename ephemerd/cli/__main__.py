"""``python -m ephemerd.cli``: the same as the ``ephemerd`` console script."""

import sys

from ephemerd.cli import main

sys.exit(main())
