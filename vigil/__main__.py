"""`python -m vigil`: the command line (`vigil.cli`), as the `vigil` script runs it."""

from vigil.cli import main

main()
