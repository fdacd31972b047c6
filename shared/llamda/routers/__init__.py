"""FastAPI routers, one per API: declare routes, call one service method, no logic."""

from __future__ import annotations

from fastapi import Request

from llamda.stack import Stack


async def get_stack(request: Request) -> Stack:
    # async on purpose: FastAPI runs a sync dependency in a worker thread (~1 ms per request).
    return request.app.state.stack
