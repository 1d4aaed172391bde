"""`python -m expmon.cli`: the same as the `expmon` console script."""

import sys

from expmon.cli.main import main

sys.exit(main())
