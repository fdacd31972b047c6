"""Vector IO providers (LanceDB)."""
