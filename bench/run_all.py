"""Run every benchmark in bench/ (``make bench``); each prints its own markdown table.

    python bench/run_all.py [--device cuda] [--quick]

Results are recorded by hand in bench/RESULTS.md with the machine they came from.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = ["bench_hooks.py", "bench_geometry.py", "bench_saes.py", "bench_landscape.py"]


def main(argv):
    here = Path(__file__).resolve().parent
    rc = 0
    for name in BENCHES:
        path = here / name
        if not path.exists():
            continue
        print(f"\n## {name}\n", flush=True)
        rc |= subprocess.call([sys.executable, str(path), *argv])
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
