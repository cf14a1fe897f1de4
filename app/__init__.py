"""The product: the `echo-iad` CLI, `serve`, `demo`, the embedded server and the ingest path.

Everything here composes the stages (services/<stage>/) and the settings tree (services/config.py); nothing
below imports it (tests/test_architecture.py).
"""
