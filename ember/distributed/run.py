"""``ember-run``: start N processes of a training script, as torchrun does.

    ember-run --nproc-per-node 4 train.py --lr 0.1
    python -m ember.distributed.run --nproc-per-node 4 -m mypkg.train

It runs the MPI launcher (``mpiexec`` of the mpich wheel, or any MPI's on ``PATH``), so
the processes find each other through MPI; each gets torchrun's variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``)
before the script starts. A rank that raises prints its traceback and aborts the job
(``init_process_group`` installs that hook), and the MPI launcher then ends every other
rank: the command exits non-zero within moments, never hangs.
"""
from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys


def find_mpiexec() -> str:
    """The MPI launcher beside this Python (a wheel's), else the first on PATH."""
    here = os.path.dirname(sys.executable)
    for name in ("mpiexec", "mpirun"):
        p = os.path.join(here, name)
        if os.access(p, os.X_OK):
            return p
    for name in ("mpiexec", "mpirun"):
        p = shutil.which(name)
        if p:
            return p
    raise SystemExit("ember-run: no mpiexec found; pip install 'ember[distributed]' (mpi4py and "
                     "the mpich wheel) or put an MPI launcher on PATH")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ember-run", description="Run a script on N processes "
                                "(torchrun's interface, on MPI).")
    p.add_argument("--nproc-per-node", "--nproc_per_node", dest="nproc", default="1",
                   help="processes to start (an integer; 'auto'/'cpu' mean the CPU count, "
                        "'gpu' the GPU count)")
    p.add_argument("--nnodes", default="1", help="only 1 node is started by ember-run; for "
                   "several nodes run mpiexec with your MPI's host file")
    p.add_argument("--node-rank", "--node_rank", default="0")
    p.add_argument("--master-addr", "--master_addr", default="127.0.0.1")
    p.add_argument("--master-port", "--master_port", default="29500")
    p.add_argument("--standalone", action="store_true", help="accepted (torchrun's)")
    p.add_argument("--max-restarts", "--max_restarts", default="0",
                   help="accepted; failures are not retried")
    p.add_argument("-m", "--module", action="store_true", help="run the script as a module")
    p.add_argument("--no-python", "--no_python", action="store_true",
                   help="run the script as an executable, not with Python")
    p.add_argument("script")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _nproc(value: str) -> int:
    if value in ("auto", "cpu"):
        return os.cpu_count() or 1
    if value == "gpu":
        try:
            import cupy
            return cupy.cuda.runtime.getDeviceCount()
        except Exception:
            raise SystemExit("ember-run: --nproc-per-node gpu needs CuPy and a GPU") from None
    n = int(value)
    if n < 1:
        raise SystemExit("ember-run: --nproc-per-node must be at least 1")
    return n


def main(argv: list[str] | None = None) -> int:
    opts = _parser().parse_args(argv)
    if opts.nnodes not in ("1", "1:1"):
        raise SystemExit("ember-run starts one node; for several nodes run `mpiexec -n N "
                         "-f hosts python script.py` (MPI's own multi-node launch)")
    n = _nproc(opts.nproc)
    env = dict(os.environ)
    env["MASTER_ADDR"], env["MASTER_PORT"] = opts.master_addr, str(opts.master_port)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if n > 1 and "OMP_NUM_THREADS" not in env:
        # As torchrun: N processes each running a multi-threaded BLAS oversubscribe the
        # cores. Measured on 2 cores, the example MLP with 2 ranks: 258 ms/step with
        # default threads, 24 ms/step with one thread a rank.
        env["OMP_NUM_THREADS"] = "1"
        sys.stderr.write("ember-run: setting OMP_NUM_THREADS=1 for each process so as not to "
                         "overload the system; tune it for best performance\n")
    if opts.no_python:
        inner = [opts.script] + opts.args
    else:
        inner = [sys.executable, "-m", "ember.distributed.run", "--_child",
                 "module" if opts.module else "script", opts.script] + opts.args
    cmd = [find_mpiexec(), "-n", str(n)] + inner
    proc = subprocess.run(cmd, env=env)
    return proc.returncode


def _child(kind: str, target: str, args: list[str]) -> None:
    """One rank: set torchrun's variables from MPI's, then run the user's code as
    ``__main__`` (so ``if __name__ == "__main__"`` holds)."""
    import ember.distributed  # noqa: F401  (sets RANK, WORLD_SIZE, ... from MPI's variables)

    if kind == "module":
        sys.argv = [target] + args
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target] + args
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--_child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(main())
