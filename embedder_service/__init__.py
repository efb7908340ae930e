"""The embedder service: owns the OpenCLIP model and embeds texts and images over gRPC."""
