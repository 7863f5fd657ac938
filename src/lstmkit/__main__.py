"""``python -m lstmkit``: the same as the ``lstmkit`` command (torchrun launches it this way)."""

from lstmkit.cli.main import cli_main

raise SystemExit(cli_main())
