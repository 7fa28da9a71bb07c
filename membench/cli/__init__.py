"""The command line: one module per `membench` command."""
