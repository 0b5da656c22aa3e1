"""`python -m stsd` is the `stsd` command."""

import sys

from stsd.cli import main

sys.exit(main())
