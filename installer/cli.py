"""`servicegate-install`: a placeholder until its issue builds it; it says so and exits 1."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    sys.stderr.write("servicegate-install: not built yet; "
                     "see the open issues (issues list).\n")
    return 1
