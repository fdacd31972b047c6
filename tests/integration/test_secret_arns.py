"""Secrets named by ARN (the template's *Parameter parameters take them): read from the service
and region the ARN names, in any partition, on a real moto server."""

from __future__ import annotations

import asyncio

import boto3
import pytest

from llamda.errors import ServiceUnavailableError
from llamda.providers.inference.remote_openai import read_secret


def test_secrets_are_read_where_their_arn_says(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # GovCloud: arn:aws-us-gov:secretsmanager:... (a Secrets Manager ARN outside partition aws).
    gov = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-gov-west-1")
    gov_arn = gov.create_secret(Name="llamda/gov-key", SecretString="gov-value")["ARN"]
    assert gov_arn.startswith("arn:aws-us-gov:secretsmanager:us-gov-west-1:")
    # An SSM parameter of another region, by ARN; and one of this region, by name.
    eu = boto3.client("ssm", endpoint_url=moto_endpoint, region_name="eu-west-1")
    eu.put_parameter(Name="/llamda/eu-key", Value="eu-value", Type="SecureString")
    eu_arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/llamda/eu-key"
    home = boto3.client("ssm", endpoint_url=moto_endpoint, region_name="us-east-1")
    home.put_parameter(Name="/llamda/home-key", Value="home-value", Type="SecureString")

    async def scenario() -> None:
        from llamda.aws import clients

        try:
            assert await read_secret(gov_arn) == "gov-value"
            assert await read_secret(eu_arn) == "eu-value"
            assert await read_secret("/llamda/home-key") == "home-value"
            with pytest.raises(ServiceUnavailableError, match="cannot read"):
                await read_secret("/llamda/absent")
        finally:
            await clients.close()

    asyncio.run(scenario())
