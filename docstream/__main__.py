"""`python -m docstream …` is the `docstream` command."""
from .cli.main import main

main()
