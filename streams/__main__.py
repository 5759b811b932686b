"""``python -m columnist``: the command line."""

from columnist.cli.main import main

main()
