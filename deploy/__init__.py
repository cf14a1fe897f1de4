"""Cluster mode: the stages of services/ placed and scaled as Ray Serve applications.

`apps.py` holds the builders the Serve YAML names (their pydantic args are the
schema), `deployments.py` the thin wrappers that host each stage's servicer,
`launch.py` the `echo-iad serve --ray CONFIG` command. No stage logic lives here.
"""
