"""NumPy's OpenBLAS workers sleep soon after a GEMM once ember is imported
(``ember/blas_spin.py``), unless the user chose their spin themselves."""
import os
import subprocess
import sys

import pytest

from ember import blas_spin

pytestmark = pytest.mark.skipif(blas_spin._openblas() is None,
                                reason="NumPy's BLAS here is not an OpenBLAS with the "
                                       "entry points ember uses")

_PROBE = """
import os, numpy as np
a = np.random.default_rng(0).random((600, 600))
before = a @ a                       # OpenBLAS's thread server is running
import ember
from ember import blas_spin
after = a @ a                        # restarted, with the spin read from the environment
print(blas_spin.STATE, blas_spin._openblas().openblas_thread_timeout(),
      np.array_equal(before, after), len(os.listdir("/proc/self/task")))
"""


def _probe(**env) -> list[str]:
    full = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    full.update(env, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", _PROBE], env=full, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_import_shortens_openblas_spin_and_gemms_still_run_threaded():
    state, timeout, same, threads = _probe()
    assert state == "shortened"
    assert int(timeout) == blas_spin.SPIN_LOG2_CYCLES
    assert same == "True"            # the restarted server computes the same product
    if (os.cpu_count() or 1) > 1 and not any(os.environ.get(v) for v in (
            "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
        assert int(threads) >= 2     # its workers came back


def test_a_users_openblas_thread_timeout_is_kept():
    state, timeout, same, _ = _probe(OPENBLAS_THREAD_TIMEOUT="18")
    assert (state, int(timeout), same) == ("user-set", 18, "True")


def test_a_child_of_an_ember_process_reads_the_setting_it_inherits():
    state, timeout, _, _ = _probe(OPENBLAS_THREAD_TIMEOUT=str(blas_spin.SPIN_LOG2_CYCLES))
    assert (state, int(timeout)) == ("shortened", blas_spin.SPIN_LOG2_CYCLES)
