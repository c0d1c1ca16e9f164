"""Allow `python -m g2l ...`."""

from g2l.cli import main

main()
