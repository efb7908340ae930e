"""Generated gRPC stubs of protos/fashionrag/v1 (`make protos` writes them; they are not in git)."""
