"""`python -m posttrain.cli ...`: the `posttrain` command without its console script."""

from posttrain.cli import main

main()
