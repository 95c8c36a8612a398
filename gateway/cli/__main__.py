"""`python -m gateway.cli ...` runs the `hammer` command line."""

import sys

from gateway.cli.main import main

sys.exit(main())
