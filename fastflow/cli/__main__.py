"""``python -m fastflow.cli``: the ``fastflow`` command."""
import sys

from . import main

sys.exit(main())
