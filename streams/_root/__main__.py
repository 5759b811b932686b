"""``python -m columnist``: the command line."""

from columnist.streams.cli.main import main

main()
