"""The client library of the query service: what other services (and the `search` and `eval`
commands) import to search the indexed photos.

The twin of the embedder's client: calls spread over every replica behind a DNS name
(`dns:///query:50052`) with gRPC's round_robin, replicas that report NOT_SERVING are skipped,
UNAVAILABLE is retried with jittered backoff, every call has a deadline, and errors come out as
fashionrag's domain errors.

    from query_service.client import QueryClient

    with QueryClient("127.0.0.1:50052") as search:
        for hit in search.text("red tops", top_k=5).hits:
            print(hit.rank, hit.distance, hit.record.path)
"""

from __future__ import annotations

from collections.abc import Sequence

from fashionrag.grpc_client import GrpcClient, translate_errors
from fashionrag.grpc_security import PLAINTEXT, ClientSecurity
from fashionrag.v1 import query_pb2, query_pb2_grpc
from query_service.conversions import outcome_from_response, request_from_query
from query_service.search_types import GarmentMatch, Hit, SearchOutcome, SearchQuery

SERVICE_NAME = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name


class QueryClient(GrpcClient):
    """A connection to one query service address, or to every replica behind a DNS name.

    Args:
        target: "host:port", or "dns:///name:port".
        timeout: the default deadline of each search, in seconds.
        security: TLS (mutual TLS) and the bearer token to send (default: plaintext, none).
    """

    service_name = SERVICE_NAME
    label = "query service"
    backend = "query"

    def __init__(
        self, target: str, timeout: float = 30.0, *, security: ClientSecurity = PLAINTEXT
    ) -> None:
        super().__init__(target, timeout, security=security)
        self._stub = query_pb2_grpc.QueryServiceStub(self.channel)

    @translate_errors
    def search(self, query: SearchQuery, timeout: float | None = None) -> SearchOutcome:
        """Run one search, as the core's SearchQuery says.

        Raises:
            FashionragError: the service's error as a domain error (InvalidArgument for a bad
                query, FailedPrecondition for a model mismatch, Unavailable...).
        """
        response = self._stub.Search(request_from_query(query), timeout=timeout or self.timeout)
        return outcome_from_response(response)

    def text(
        self,
        text: str,
        *,
        top_k: int | None = None,
        categories: Sequence[str] = (),
        auto_category: bool | None = None,
        colours: Sequence[str] = (),
        timeout: float | None = None,
    ) -> SearchOutcome:
        """Search by text: the `top_k` nearest photos (default 10), nearest first, each once;
        a text that names a garment ranks photos by their best-matching garment.

        Args:
            text: what to look for, e.g. "red tops".
            top_k: how many results, 1 to 100.
            categories: Fashionpedia categories to filter on, instead of those the text names.
            auto_category: whether the garments and colours the text names become filters
                (None: the service's default).
            colours: palette colours (fashionrag.colours.COLOURS) the garments must have,
                instead of those the text names.
            timeout: this call's deadline in seconds (default: the client's).
        """
        query = SearchQuery(
            text=text,
            top_k=top_k,
            categories=list(categories),
            auto_category=auto_category,
            colours=list(colours),
        )
        return self.search(query, timeout)

    def image(
        self,
        data: bytes,
        *,
        top_k: int | None = None,
        categories: Sequence[str] = (),
        timeout: float | None = None,
    ) -> SearchOutcome:
        """Search by an encoded image (JPEG, PNG, WebP...): the nearest photos to it."""
        query = SearchQuery(image=data, top_k=top_k, categories=list(categories))
        return self.search(query, timeout)


__all__ = ["GarmentMatch", "Hit", "QueryClient", "SearchOutcome", "SearchQuery"]
