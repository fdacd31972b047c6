"""Run configs the in-process vector tests share: files + vector stores over the fake Bedrock."""

from __future__ import annotations

from pathlib import Path

_VECTOR_CONFIG = """
version: 1
apis: [models, inference, files, vector_io]
providers:
  inference:
    - {{provider_id: fake-bedrock, provider_type: bedrock,
       config: {{region_name: us-east-1, endpoint_url: "{bedrock}"}}}}
  vector_io:
    - {{provider_id: lancedb, provider_type: lancedb}}
{models}storage:
  records: {{type: sqlite, path: "{home}/records.sqlite3"}}
  objects: {{type: local, root: "{home}/objects"}}
  vectors: {{uri: "{home}/lancedb"{vectors}}}
"""
_TITAN = """models:
  - {model_id: "amazon.titan-embed-text-v2:0", provider_id: fake-bedrock, model_type: embedding,
     metadata: {embedding_dimension: 1024}}
"""


def vector_config(home: Path, bedrock: str, *, titan: bool = True, vectors: str = "") -> str:
    """The YAML: records, objects and LanceDB under ``home``; ``vectors`` adds settings to
    ``storage.vectors`` (e.g. ``"ann_index_min_rows: 256"``)."""
    return _VECTOR_CONFIG.format(
        home=home,
        bedrock=bedrock,
        models=_TITAN if titan else "",
        vectors=f", {vectors}" if vectors else "",
    )
