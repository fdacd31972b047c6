"""The agents API: Responses, Conversations and Prompts."""

from __future__ import annotations

from fastapi import APIRouter

from llamda.routers.conversations import router as conversations_router
from llamda.routers.prompts import router as prompts_router
from llamda.routers.responses import router as responses_router

router = APIRouter()
router.include_router(responses_router)
router.include_router(conversations_router)
router.include_router(prompts_router)
