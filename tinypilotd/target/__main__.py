"""C{python -m tinypilotd.target}: run the virtual target computer."""

import sys

from tinypilotd.target.main import main

sys.exit(main())
