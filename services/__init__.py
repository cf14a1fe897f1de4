"""Echo-IAD: a multi-expert MLLM industrial anomaly inspector served over gRPC."""
