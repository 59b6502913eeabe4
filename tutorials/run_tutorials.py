"""Execute the tutorials in place, so that they are stored with their outputs and figures.

    python tutorials/run_tutorials.py                       # every notebook, full settings
    python tutorials/run_tutorials.py kang_perturbation     # one notebook

The notebooks run with the kernel of this Python (install the package with its ``doc`` extra
first) and their default number of epochs; the documentation shows the stored outputs, and the
test suite executes a copy of each notebook with a few epochs to check that it still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
KERNEL_NAME = "python3"
CELL_TIMEOUT = 3600


def use_this_python(folder: Path) -> None:
    """A ``python3`` kernel spec in ``folder`` that runs this interpreter, found first."""
    spec_dir = folder / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    os.environ["JUPYTER_PATH"] = str(folder)


def run(path: Path) -> float:
    """Execute the notebook at ``path`` and write it back with its outputs; the seconds."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    # the kernel spec is this machine's: keep the notebook's own generic one
    notebook.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": KERNEL_NAME,
    }
    nbformat.write(notebook, path)
    return time.perf_counter() - start


def main() -> None:
    """Execute the notebooks named on the command line, or all of them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="notebook names (without .ipynb); all by default")
    args = parser.parse_args()
    paths = [HERE / f"{name}.ipynb" for name in args.names] or sorted(HERE.glob("*.ipynb"))
    os.environ.pop("SCGMVAE_TUTORIAL_EPOCHS", None)  # the notebooks' own settings
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    with tempfile.TemporaryDirectory() as folder:
        use_this_python(Path(folder))
        for path in paths:
            print(f"{path.name}: {run(path):.0f} s", flush=True)


if __name__ == "__main__":
    main()
