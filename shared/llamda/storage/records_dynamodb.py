"""Records in one DynamoDB table (the aws profile): pk = "<tenant>#<kind>", sk = key.

Values are stored as one JSON string attribute so numbers round-trip exactly (no Decimal).
"""

from __future__ import annotations

import json
import time
from typing import Any

from llamda.aws import AioClients, clients, error_code
from llamda.context import current_tenant
from llamda.errors import ConflictError, PayloadTooLargeError, ServiceUnavailableError
from llamda.storage.keys import check_kind
from llamda.storage.records import EXPIRES, Record, expired

_THROTTLED = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
}


class DynamoDBRecordStore:
    def __init__(
        self,
        table_name: str,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        aio: AioClients = clients,
    ):
        self._table = table_name
        self._region = region_name
        self._endpoint = endpoint_url
        self._aio = aio

    async def _client(self) -> Any:
        return await self._aio.client(
            "dynamodb", region_name=self._region, endpoint_url=self._endpoint
        )

    @staticmethod
    def _pk(kind: str) -> dict[str, str]:
        return {"S": f"{current_tenant()}#{check_kind(kind)}"}

    async def _call(self, method: str, **kwargs: Any) -> Any:
        client = await self._client()
        try:
            return await getattr(client, method)(TableName=self._table, **kwargs)
        except Exception as exc:
            if error_code(exc) in _THROTTLED:
                raise ServiceUnavailableError("record store is throttled; retry") from exc
            raise

    async def put(
        self,
        kind: str,
        key: str,
        value: Record,
        *,
        if_absent: bool = False,
        if_version: int | None = None,
        expires_at: int | None = None,
    ) -> None:
        if expires_at is not None:
            value = {**value, EXPIRES: int(expires_at)}
        # ``ver`` mirrors the document's version so a put can be conditional on it.
        item = {
            "pk": self._pk(kind),
            "sk": {"S": key},
            "doc": {"S": json.dumps(value)},
            "ver": {"N": str(int(value.get("version") or 0))},
        }
        if expires_at is not None:  # the table's TTL attribute: DynamoDB deletes it later
            item["expires_at"] = {"N": str(int(expires_at))}
        extra: dict[str, Any] = {}
        if if_absent:
            extra = {"ConditionExpression": "attribute_not_exists(pk)"}
        elif if_version is not None:
            condition = "attribute_exists(pk) AND ver = :v"
            if if_version == 0:  # written before versions existed
                condition = "attribute_exists(pk) AND (attribute_not_exists(ver) OR ver = :v)"
            extra = {
                "ConditionExpression": condition,
                "ExpressionAttributeValues": {":v": {"N": str(if_version)}},
            }
        try:
            await self._call("put_item", Item=item, **extra)
        except Exception as exc:
            if error_code(exc) == "ValidationException" and "size" in str(exc).lower():
                raise PayloadTooLargeError(
                    f"{kind.split(':')[0]} record too large to store (DynamoDB's 400 KB limit)"
                ) from None
            if error_code(exc) == "ConditionalCheckFailedException":
                what = "already exists" if if_absent else "changed or was deleted meanwhile"
                raise ConflictError(f"{key!r} {what}") from None
            raise

    async def get(self, kind: str, key: str) -> Record | None:
        reply = await self._call(
            "get_item", Key={"pk": self._pk(kind), "sk": {"S": key}}, ConsistentRead=True
        )
        item = reply.get("Item")
        record = json.loads(item["doc"]["S"]) if item else None
        # TTL deletion lags (up to days): an expired item is already gone for readers.
        return None if record is None or expired(record, time.time()) else record

    async def delete(self, kind: str, key: str) -> bool:
        reply = await self._call(
            "delete_item", Key={"pk": self._pk(kind), "sk": {"S": key}}, ReturnValues="ALL_OLD"
        )
        return bool(reply.get("Attributes"))

    async def list(
        self, kind: str, *, after: str | None = None, limit: int = 1000, descending: bool = False
    ) -> list[Record]:
        values: dict[str, Any] = {":pk": self._pk(kind)}
        condition = "pk = :pk"
        if after:
            condition += f" AND sk {'<' if descending else '>'} :after"
            values[":after"] = {"S": after}
        out: list[Record] = []
        start: dict[str, Any] | None = None
        while len(out) < limit:
            kwargs: dict[str, Any] = {
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "Limit": limit - len(out),
                "ConsistentRead": True,
                "ScanIndexForward": not descending,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            reply = await self._call("query", **kwargs)
            now = time.time()
            docs = (json.loads(item["doc"]["S"]) for item in reply.get("Items", []))
            out.extend(doc for doc in docs if not expired(doc, now))
            start = reply.get("LastEvaluatedKey")
            if not start:
                break
        return out

    async def purge_expired(self) -> int:
        return 0  # the table's TTL deletes expired items

    async def incr(self, kind: str, key: str, amount: int, *, expires_at: int) -> int:
        """``UpdateItem ADD``: atomic across every container; ``expires_at`` is the table's
        TTL attribute, so old windows disappear on their own."""
        pk = {"S": f"{current_tenant()}#{check_kind(kind)}#counters"}  # apart from documents
        reply = await self._call(
            "update_item",
            Key={"pk": pk, "sk": {"S": key}},
            UpdateExpression="ADD n :amount SET expires_at = if_not_exists(expires_at, :exp)",
            ExpressionAttributeValues={
                ":amount": {"N": str(amount)},
                ":exp": {"N": str(expires_at)},
            },
            ReturnValues="UPDATED_NEW",
        )
        return int(reply["Attributes"]["n"]["N"])

    async def close(self) -> None:
        await self._aio.close()
