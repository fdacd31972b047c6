"""API Gateway REQUEST authorizer: `Authorization: Bearer <key>` → the key's tenant and role
in the request context of every API function (results cached briefly by API Gateway)."""

from llamda.lambda_authorizer import authorizer_handler

lambda_handler = authorizer_handler()
