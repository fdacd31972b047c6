"""FastAPI routers, one per API: declare routes, call one service method, no logic."""

from __future__ import annotations

from fastapi import Request

from llamda.stack import Stack


def get_stack(request: Request) -> Stack:
    return request.app.state.stack
