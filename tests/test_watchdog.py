"""The progress watchdog ends a stuck run with a message instead of hanging."""

import io
import subprocess
import sys
import threading
import time

from apexjax.watchdog import EXIT_STUCK, Watchdog


def test_fires_after_the_timeout_without_progress():
    fired = threading.Event()
    codes = []
    out = io.StringIO()

    def exit_fn(code):
        codes.append(code)
        fired.set()

    with Watchdog(0.3, stream=out, exit_fn=exit_fn) as wd:
        wd.progress("compiling the training step")
        assert fired.wait(5.0)
    assert codes == [EXIT_STUCK]
    assert "no progress" in out.getvalue() and "compiling the training step" in out.getvalue()


def test_progress_keeps_it_quiet_and_zero_disables():
    codes = []
    with Watchdog(0.5, exit_fn=codes.append) as wd:
        for _ in range(8):
            time.sleep(0.1)
            wd.progress("iteration")
    with Watchdog(0, exit_fn=codes.append):
        time.sleep(0.3)
    assert codes == []


def test_a_blocked_process_exits_with_status_3_and_stacks():
    code = (
        "import threading\n"
        "from apexjax.watchdog import Watchdog\n"
        "with Watchdog(0.5):\n"
        "    threading.Event().wait()\n"  # blocks forever, like a deadlocked collective
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == EXIT_STUCK
    assert "stopping instead of hanging" in p.stderr and "Thread" in p.stderr
