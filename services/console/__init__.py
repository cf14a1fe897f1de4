"""The operator console: `echo-iad console`, server-rendered pages over the Inspector's gRPC API."""
