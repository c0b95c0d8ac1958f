"""`python -m caitool.testing.fake_server`: see `cli.py`."""

import sys

from .cli import main

sys.exit(main())
