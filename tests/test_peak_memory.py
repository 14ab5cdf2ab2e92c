"""benchmarks/peak_memory.py cannot rot: its tiny run measures both sides in fresh processes."""
from __future__ import annotations

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def peak_memory():
    return load_benchmark("peak_memory")


def test_tiny_run_reports_each_side_from_its_own_process(peak_memory, tmp_path, capsys):
    out = tmp_path / "rows.json"
    rows = peak_memory.main(["--variant", "tiny", "--threads", "1", "--out", str(out)])
    assert [row["side"] for row in rows] == ["reference", "ours"]
    for row in rows:
        assert row["masks"] == [3, 768, 1024]  # one multimask predict on the 768x1024 image
        assert 0 < row["after_build_mb"] <= row["peak_mb"]
    assert rows[0]["peak_over_reference"] == 1.0
    assert out.is_file() and "peak / ref" in capsys.readouterr().out


def test_bad_thread_count_is_refused(peak_memory):
    with pytest.raises(SystemExit):
        peak_memory.parse_args(["--threads", "0"])
