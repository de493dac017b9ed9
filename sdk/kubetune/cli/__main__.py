"""``python -m kubetune.cli``."""

from kubetune.cli import main

main()
