"""Services: the logic of each API. Never import FastAPI."""
