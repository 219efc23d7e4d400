"""The REST tree: Klein routes for /api/v1 and the token store."""
