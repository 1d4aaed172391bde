"""`expmon`: the command line, one module per verb (options beside their run code)."""

from expmon.cli.main import main

__all__ = ["main"]
