"""The Responses routes (agents API)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["agents"])
