"""`python -m agmm ...` (what `torchrun -m agmm train ...` runs)."""

import sys

from agmm.cli import main

sys.exit(main())
