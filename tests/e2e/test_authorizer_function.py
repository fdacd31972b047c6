"""The built authorizer function, invoked with API Gateway REQUEST-authorizer events against the
stack's records table (moto): a good key → Allow with the tenant in the context; bad → 401."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from llamda.api.keys import CreateKeyRequest
from llamda.services.keys import KeysService
from llamda.storage.records_dynamodb import DynamoDBRecordStore
from tests.e2e.harness import Artifact, api_gateway_event, lambda_env, response_json

pytestmark = pytest.mark.e2e
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/api/GET/v1/models"


def authorizer_event(authorization: str | None) -> dict[str, Any]:
    """A REQUEST authorizer event (payload as API Gateway REST sends it)."""
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "User-Agent": "e2e"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "resource": "/v1/models",
        "path": "/v1/models",
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {},
        "multiValueQueryStringParameters": {},
        "pathParameters": {},
        "stageVariables": {},
        "requestContext": {
            "resourcePath": "/v1/models",
            "httpMethod": "GET",
            "path": "/api/v1/models",
            "accountId": "123456789012",
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "e2e"},
            "apiId": "abc123",
        },
    }


def make_key(moto_endpoint: str, table: str, tenant: str, role: str = "member") -> tuple[str, str]:
    async def create() -> tuple[str, str]:
        records = DynamoDBRecordStore(table, "us-east-1", moto_endpoint)
        try:
            key, secret = await KeysService(records).create(
                CreateKeyRequest(tenant=tenant, role=role, rpm=60)
            )
            return key.id, secret
        finally:
            await records.close()

    return asyncio.run(create())


def test_authorizer_allows_good_keys_with_their_tenant_and_denies_the_rest(
    artifacts: dict[str, Artifact],
    aws_env: dict[str, str],
    aws_resources: dict[str, str],
    moto_endpoint: str,
) -> None:
    authorizer = artifacts["AuthorizerFunction"]
    key_id, secret = make_key(moto_endpoint, aws_resources["RecordsTable"], "acme")
    events = [
        authorizer_event(f"Bearer {secret}"),
        authorizer_event(f"bearer {secret}"),
        authorizer_event("Bearer llamda-" + "x" * 43),
        authorizer_event(None),
        authorizer_event(secret),  # no scheme
    ]
    report = authorizer.invoke(events, lambda_env(authorizer, aws_env))
    good, lower, forged, missing, bare = report["results"]
    for allowed in (good, lower):
        assert allowed["principalId"] == key_id
        assert allowed["context"]["tenant"] == "acme"
        assert allowed["context"]["key_id"] == key_id
        assert allowed["context"]["role"] == "member" and allowed["context"]["rpm"] == "60"
        statement = allowed["policyDocument"]["Statement"][0]
        assert statement["Effect"] == "Allow"
        # Cached per key across routes: the policy covers the whole API stage.
        assert statement["Resource"][0].endswith("abc123/api/*/*")
        assert secret not in json.dumps(allowed)
    for denied in (forged, missing, bare):
        assert denied == {"errorType": "Exception", "errorMessage": "Unauthorized"}


def test_api_function_trusts_the_authorizer_context_only(
    artifacts: dict[str, Artifact],
    aws_env: dict[str, str],
    aws_resources: dict[str, str],
    moto_endpoint: str,
) -> None:
    """The functions take tenant and role from the authorizer's context; with none (a route
    the gateway left open, or a misconfiguration) they answer 401 themselves."""
    control = artifacts["ControlFunction"]
    make_key(moto_endpoint, aws_resources["RecordsTable"], "acme")
    events = [
        api_gateway_event("GET", "/v1/models", tenant="acme"),
        api_gateway_event("GET", "/v1/models", tenant=None),
        api_gateway_event("GET", "/v1/health", tenant=None),
        api_gateway_event("GET", "/v1/admin/keys", tenant="acme", role="member"),
        api_gateway_event("GET", "/v1/admin/keys", tenant="ops", role="admin"),
    ]
    report = control.invoke(events, lambda_env(control, aws_env))
    listed, anonymous, health, member, admin = report["results"]
    assert listed["statusCode"] == 200
    assert anonymous["statusCode"] == 401
    assert response_json(anonymous)["error"]["code"] == "invalid_api_key"
    assert health["statusCode"] == 200
    assert member["statusCode"] == 403
    assert admin["statusCode"] == 200
    assert any(k["tenant"] == "acme" for k in response_json(admin)["data"])
