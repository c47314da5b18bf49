#!/usr/bin/env python3
"""Set-up and everyday tasks on a fresh machine with only Python 3.10+.

    python3 tasks.py demo    # create/reuse .venv, install pinned deps, run the demo
    python3 tasks.py test    # create/reuse .venv, install pinned deps, run the full test suite

Extra arguments after `test` go to pytest (e.g. `python3 tasks.py test -k parity`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".w2vcli-installed"


def _install_key() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_venv() -> None:
    """Create .venv and install the package with pinned dev dependencies, unless already up to date."""
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    key = _install_key()
    if STAMP.exists() and STAMP.read_text() == key:
        return
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["-c", "constraints.txt", "-e", ".[dev]"], cwd=ROOT, check=True)
    STAMP.write_text(key)


def run(args: list[str]) -> int:
    return subprocess.run(args, cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test"}:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_venv()
    if argv[0] == "test":
        return run([str(PY), "-m", "pytest", *argv[1:]])
    return run(["bash", str(ROOT / "examples" / "demo.sh"), *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
