"""``llamda keys``: create, list and revoke API keys in the run config's record store, or in a
deployed stack's DynamoDB table (``--stack NAME``, with your AWS credentials)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from llamda.errors import LlamdaError


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage API keys (create, list, revoke)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)

    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="run config YAML (default: $LLAMDA_CONFIG or profile)")
        p.add_argument("--stack", help="a deployed stack's name: use its DynamoDB table")
        p.add_argument("--region", help="AWS region of --stack (default: your AWS config)")

    create = keys_sub.add_parser("create", help="create a key; the key is the last line printed")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", choices=["admin", "member"], default="member")
    create.add_argument("--rpm", type=int, help="requests per minute (default: unlimited)")
    create.add_argument("--tpm", type=int, help="tokens per minute (default: unlimited)")
    create.add_argument("--name", help="a label for humans")
    target(create)
    listing = keys_sub.add_parser("list", help="list keys (never the secrets)")
    listing.add_argument("--tenant")
    target(listing)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    target(revoke)
    keys.set_defaults(func=run)


def _records(args: argparse.Namespace) -> Any:
    if args.stack:
        import boto3

        from llamda.storage.records_dynamodb import DynamoDBRecordStore

        session = boto3.session.Session(region_name=args.region)
        resource = session.client("cloudformation").describe_stack_resource(
            StackName=args.stack, LogicalResourceId="RecordsTable"
        )
        table = resource["StackResourceDetail"]["PhysicalResourceId"]
        return DynamoDBRecordStore(table, session.region_name)
    from llamda.config import load_config
    from llamda.storage.records import build_records

    return build_records(load_config(args.config).storage.records)


async def _run(args: argparse.Namespace) -> int:
    from llamda.api.keys import CreateKeyRequest
    from llamda.services.keys import KeysService

    records = _records(args)
    keys = KeysService(records)
    try:
        if args.keys_command == "create":
            request = CreateKeyRequest(
                tenant=args.tenant, role=args.role, rpm=args.rpm, tpm=args.tpm, name=args.name
            )
            key, secret = await keys.create(request)
            limits = f"rpm={key.rpm or 'unlimited'} tpm={key.tpm or 'unlimited'}"
            print(f"created {key.id} for tenant {key.tenant} (role {key.role}, {limits})")
            print("the key is shown once; store it now:")
            print(secret)
        elif args.keys_command == "list":
            rows = await keys.list(args.tenant)
            print(f"{'ID':22} {'TENANT':20} {'ROLE':7} {'RPM':>8} {'TPM':>10} {'HINT':18} STATE")
            for k in rows:
                state = "revoked" if k.revoked_at else "active"
                print(
                    f"{k.id:22} {k.tenant:20} {k.role:7} {k.rpm or '-':>8} {k.tpm or '-':>10} "
                    f"{k.hint:18} {state}"
                )
        else:
            key = await keys.revoke(args.key_id)
            print(f"revoked {key.id} (tenant {key.tenant}); it stops working within 30 seconds")
        return 0
    finally:
        await records.close()


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        return asyncio.run(_run(args))
    except LlamdaError as exc:
        print(f"llamda keys: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"llamda keys: {problems}", file=sys.stderr)
        return 2
