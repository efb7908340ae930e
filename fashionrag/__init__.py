"""Shared parts of the fashionrag services: contracts, errors, settings and the gRPC lifecycle."""
