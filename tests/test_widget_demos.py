"""`make demos`: Voila serves widgets/ on 127.0.0.1 only and culls the kernels of closed tabs.
(That the culling really frees a closed tab's kernel is checked in a browser:
tests/test_browser.py::test_voila_culls_the_kernel_of_a_closed_tab.)"""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demos_serves_the_widgets_on_localhost_and_culls_idle_unconnected_kernels():
    plan = subprocess.run(["make", "-n", "demos", "DEMOS_PORT=9999"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    command = plan.replace("\\\n", " ")  # one command line, continuation lines joined
    voila = next(line for line in command.splitlines() if "bin/voila" in line)
    assert "--Voila.ip=127.0.0.1" in voila and "--port=9999" in voila and voila.split()[-1] == "widgets"
    assert "--MappingKernelManager.cull_idle_timeout=120" in voila
    assert "--MappingKernelManager.cull_interval=30" in voila
    assert "--MappingKernelManager.cull_connected=False" in voila  # an open tab's kernel is kept
    help_text = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "make demos" in help_text
