"""Providers: one module per backend, behind one Protocol per API. Never imports services."""
