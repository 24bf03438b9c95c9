"""`python -m installer`: what the bundle's servicegate-install launcher runs (imported from the wheel)."""

from installer.cli import main

raise SystemExit(main())
