"""A minimal Confluent Schema Registry client (the REST API, over httpx).

Only what serialization needs: register a schema under a subject to get its id, and
fetch a writer schema by id. Both are cached: ids are immutable in a registry.
"""

from __future__ import annotations

from typing import Protocol

import httpx


class SchemaRegistry(Protocol):
    def register(self, subject: str, schema: str) -> int: ...

    def schema(self, schema_id: int) -> str: ...


class RegistryError(RuntimeError):
    pass


class ConfluentRegistryClient:
    """Talks to ``/subjects/{subject}/versions`` and ``/schemas/ids/{id}``."""

    _CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

    def __init__(self, url: str, *, transport: httpx.BaseTransport | None = None, timeout: float = 10.0) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            transport=transport,
            timeout=timeout,
            headers={"Content-Type": self._CONTENT_TYPE, "Accept": self._CONTENT_TYPE},
        )
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}

    def register(self, subject: str, schema: str) -> int:
        key = (subject, schema)
        if key not in self._ids:
            body = self._call("POST", f"/subjects/{subject}/versions", json={"schema": schema, "schemaType": "AVRO"})
            self._ids[key] = int(body["id"])
            self._schemas[self._ids[key]] = schema
        return self._ids[key]

    def schema(self, schema_id: int) -> str:
        if schema_id not in self._schemas:
            self._schemas[schema_id] = self._call("GET", f"/schemas/ids/{schema_id}")["schema"]
        return self._schemas[schema_id]

    def _call(self, method: str, path: str, **kwargs: object) -> dict:
        try:
            response = self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise RegistryError(f"schema registry at {self._http.base_url} unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise RegistryError(f"schema registry {method} {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()
