"""`python -m modelbus.cli`: the same as the `modelbus` command."""
from modelbus.cli import main

main(prog_name="modelbus")
