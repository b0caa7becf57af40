"""The command-line entry points, one small module per command."""
