"""``python -m facsimile.cli``: the ``facs`` command."""

import sys

from . import main

sys.exit(main())
