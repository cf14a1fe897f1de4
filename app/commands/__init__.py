"""The `echo-iad` sub-command groups, one module each; app/cli.py puts them on one command."""
