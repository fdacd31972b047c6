"""Storage behind small async protocols: Records (SQLite | DynamoDB), Objects (local | S3).

Every key is scoped by the request's tenant (``llamda.context.current_tenant``) inside the
implementation, so no caller can reach another tenant's data by choosing a key.
"""
