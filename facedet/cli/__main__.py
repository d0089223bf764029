"""`python -m facedet.cli ...`: the same as the `facedet` console script."""

import sys

from facedet.cli import main

sys.exit(main())
