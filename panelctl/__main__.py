"""``python -m panelctl``: the same as the ``panelctl`` console script."""

from panelctl.cli import main

raise SystemExit(main())
