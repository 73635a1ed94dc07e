"""``python -m ephemerd``: the same as the ``ephemerd`` command."""

from ephemerd.cli import main

raise SystemExit(main())
