"""`python -m api.cli`: the gpuinv command, for an interpreter without the console script."""

import sys

from api.cli import main

sys.exit(main())
