"""Vector stores: metadata in Records, chunks in a vector backend (a ``VectorIndex`` of
``providers/vector_io``, chosen per store; LanceDB by default), embeddings from Inference.

The parts: ``stores`` (CRUD, expiry, run-config stores), ``indexes`` (which backend holds a
store), ``files`` (a store's files and file batches), ``ingestion`` (file → text → chunks →
embeddings → one write to the backend, or the ingest queue), ``search`` (retrieval, fusion,
pages), ``keyword`` (BM25 for backends without full-text search), ``vector_io`` (Llama Stack's
insert/query), ``maintenance`` (expiry and index upkeep); ``service`` composes them into the
one ``VectorStoresService`` the routers use.
"""

from llamda.services.vector_stores.common import JOB_TYPE
from llamda.services.vector_stores.service import VectorStoresService

__all__ = ["JOB_TYPE", "VectorStoresService"]
