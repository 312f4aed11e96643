"""``python -m affectlab.cli``: the ``affectlab`` command."""

import sys

from affectlab.cli.main import main

sys.exit(main())
