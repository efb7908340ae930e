"""The query service: text or image in, the nearest indexed Fashionpedia photos out (gRPC Search)."""
