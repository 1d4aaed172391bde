"""`python -m expmon.dashboards`: write the dashboards' JSON and docs/dashboards.md."""

import sys

from expmon.dashboards.generate import main

sys.exit(main())
