"""The Lambda REQUEST authorizer: the same key check the local server runs in-app.

A valid key → an IAM policy allowing every route of the API (API Gateway caches it per
Authorization header for the configured TTL, so the policy must not be route-specific) and a
context of strings: ``tenant``, ``role``, ``key_id``, ``rpm``, ``tpm``; the API functions read
it (llamda.auth, mode ``authorizer``). A missing or bad key → ``Unauthorized`` (API Gateway
answers 401 with the OpenAI-shaped gateway response from the template).
"""

from __future__ import annotations

import asyncio
from typing import Any

from llamda.observability import logger


def authorizer_handler() -> Any:
    from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
        APIGatewayAuthorizerResponse,
    )

    from llamda.auth import bearer
    from llamda.config import cached_config
    from llamda.lambda_runtime import register_snapstart_hooks
    from llamda.services.keys import KeysService
    from llamda.storage.records import build_records

    keys = KeysService(build_records(cached_config().storage.records))
    register_snapstart_hooks()  # SnapStart: botocore's retry jitter draws from `random` too
    # One loop for the container's life: the aiobotocore client is bound to it.
    loop = asyncio.new_event_loop()

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        secret = bearer(headers)
        key = loop.run_until_complete(keys.authenticate(secret)) if secret else None
        if key is None:
            logger.info("authorizer denied", reason="missing key" if not secret else "bad key")
            raise Exception("Unauthorized")  # the exact text API Gateway maps to a 401
        loop.run_until_complete(keys.touch(key.id))
        # methodArn: arn:aws:execute-api:region:account:api-id/stage/METHOD/path
        arn = event["methodArn"].split(":")
        api_id, stage = arn[5].split("/")[:2]
        response = APIGatewayAuthorizerResponse(
            principal_id=key.id,
            region=arn[3],
            aws_account_id=arn[4],
            api_id=api_id,
            stage=stage,
            partition=arn[1],
            context={
                "tenant": key.tenant,
                "role": key.role,
                "key_id": key.id,
                "rpm": str(key.rpm or ""),
                "tpm": str(key.tpm or ""),
            },
        )
        response.allow_all_routes()
        logger.info("authorizer allowed", tenant=key.tenant, key_id=key.id)
        return response.asdict()

    return handler
