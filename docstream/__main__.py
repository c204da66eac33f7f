"""`python -m docstream …` is the `docstream` command."""
from docstream.cli import main

main()
