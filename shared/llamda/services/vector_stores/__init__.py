"""Vector stores: metadata in Records, chunks in LanceDB, embeddings from the Inference service.

The parts: ``stores`` (CRUD, expiry, run-config stores), ``files`` (a store's files and file
batches), ``ingestion`` (file → text → chunks → embeddings → one LanceDB commit, or the ingest
queue), ``search`` (filters, retrieval, fusion), ``vector_io`` (Llama Stack's insert/query);
``service`` composes them into the one ``VectorStoresService`` the routers use.
"""

from llamda.services.vector_stores.common import JOB_TYPE
from llamda.services.vector_stores.search import compile_filter
from llamda.services.vector_stores.service import VectorStoresService

__all__ = ["JOB_TYPE", "VectorStoresService", "compile_filter"]
