"""`python -m consent_ui`: what `servicegate ui` starts."""

from consent_ui.app import main

raise SystemExit(main())
