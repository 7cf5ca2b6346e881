"""The check that no test leaves a process behind (conftest.nothing_left_behind) finds one."""

from __future__ import annotations

import subprocess
import sys

from leftovers import end_processes_under, processes_under


def test_a_process_left_in_a_test_folder_is_found_and_ended(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path, start_new_session=True
    )  # as a daemon would: out of our process group
    try:
        assert proc.pid in processes_under(tmp_path)
        assert proc.pid not in processes_under(tmp_path / "elsewhere")
        left = end_processes_under(tmp_path, grace=0.5)
        assert proc.pid in left and "time.sleep(60)" in left[proc.pid]
        assert proc.wait(timeout=10) == -9
        assert processes_under(tmp_path) == {}
    finally:
        proc.kill()
        proc.wait()
