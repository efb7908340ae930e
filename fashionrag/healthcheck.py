"""`python -m fashionrag.healthcheck HOST:PORT [SERVICE] [--tls-ca PEM ...]`: exit 0 when a gRPC
server's health service reports SERVING, 1 otherwise. For container health checks; a TLS server
is checked with --tls-ca (and --tls-cert/--tls-key where it asks for mutual TLS). Health needs
no token."""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fashionrag.errors import ConfigurationError
from fashionrag.grpc_security import ClientSecurity


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m fashionrag.healthcheck",
        description="Exit 0 when a gRPC server reports SERVING, 1 otherwise.",
    )
    parser.add_argument("address", help="HOST:PORT")
    parser.add_argument("service", nargs="?", default="", help="service name ('': the server)")
    parser.add_argument("--tls-ca", default="", metavar="PEM", help="CA of the server: use TLS")
    parser.add_argument("--tls-cert", default="", metavar="PEM", help="client cert (mutual TLS)")
    parser.add_argument("--tls-key", default="", metavar="PEM", help="key of --tls-cert")
    parser.add_argument(
        "--server-name",
        default="",
        help="the name in the server's certificate, when not HOST (e.g. 'embedder' for a check "
        "on 127.0.0.1)",
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        security = ClientSecurity(args.tls_ca, args.tls_cert, args.tls_key, "", args.server_name)
        channel = security.open_channel(args.address)
    except ConfigurationError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 2
    with channel:
        try:
            status = (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(service=args.service), timeout=3)
                .status
            )
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
            print(f"{args.address}: {code}", file=sys.stderr)
            return 1
    serving = status == health_pb2.HealthCheckResponse.SERVING
    print(f"{args.address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
