"""``python -m pellucid.cli``: the ``pellucid`` command."""

import sys

from .entry import main

sys.exit(main())
