"""``python -m archsearch`` is the ``archsearch`` command."""

import sys

from .cli import main

sys.exit(main())
