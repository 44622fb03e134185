"""A module of this repository as it was at a git revision, for benchmarks that
compare it side by side with this checkout's, and the conditions they print."""
import importlib.util
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent


def module_at(revision, name, directory):
    """git revision `revision`'s NAME.py, written to `directory` and imported as the
    module NAME_<revision> (its own imports resolve to this checkout's modules).
    Exits with a message naming the script when git cannot read it."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:{name}.py"],
                            capture_output=True, text=True)
    if source.returncode != 0:
        script = pathlib.Path(sys.argv[0]).name
        sys.exit(f"{script}: cannot read {name}.py at {revision!r}: {source.stderr.strip()}")
    path = pathlib.Path(directory) / f"{name}_{revision}.py"
    path.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location(f"{name}_{revision}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree_at(revision, directory):
    """The files of git revision `revision` written under `directory` (git archive |
    tar -x), as a path. Exits with a message naming the script when git cannot."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], capture_output=True)
    if archive.returncode != 0:
        script = pathlib.Path(sys.argv[0]).name
        sys.exit(f"{script}: cannot export {revision!r}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)
    return pathlib.Path(directory)


def run_conditions():
    """The conditions a side-by-side figure was measured in (BLAS threads, load)."""
    return (f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
            f"load average {os.getloadavg()[0]:.1f}")
