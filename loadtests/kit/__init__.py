"""What the load tools share (see loadtests/__init__.py)."""
