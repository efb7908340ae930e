"""The gRPC limits every fashionrag server and client agrees on."""

from __future__ import annotations

# Images travel as encoded bytes in one message: allow batches of full-size photos, and say so
# explicitly on both sides instead of relying on gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]

# Servers close each connection after about this long (gRPC adds +-10% jitter), so that callers
# resolve the service's DNS name again and find replicas added since they connected.
DEFAULT_MAX_CONNECTION_AGE_SECONDS = 30.0
