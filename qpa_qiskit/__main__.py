"""``python -m qpa_qiskit``: the ``qpa`` command line."""

import sys

from .cli import main

sys.exit(main())
