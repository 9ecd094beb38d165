"""The offline environment every test runs in (tests/offline.py, imported by conftest.py)."""

import os
import subprocess
import sys

import huggingface_hub.constants


def test_the_hub_libraries_are_offline_in_this_process():
    assert huggingface_hub.constants.HF_HUB_OFFLINE


def test_a_subprocess_inherits_the_offline_environment():
    script = "import huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert os.environ["HF_DATASETS_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
