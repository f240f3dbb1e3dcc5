"""`python -m pipeline`: the jarvis-pipeline command line."""

import sys

from pipeline.cli import main

sys.exit(main())
