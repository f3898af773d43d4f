"""``python -m pellucid``: the ``pellucid`` command (:func:`pellucid.cli.main`)."""

import sys

from .cli.entry import main

sys.exit(main())
