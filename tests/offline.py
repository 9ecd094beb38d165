"""Tests never touch a network. Imported first by ``conftest.py``: the hub libraries read these
variables when they are first imported, and every subprocess a test starts inherits them."""

import os

for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[variable] = "1"
