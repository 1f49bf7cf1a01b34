"""`python -m thrifty` is the `thrifty` command."""

from thrifty.cli import main

raise SystemExit(main())
