"""POST /api/batch: several record writes in one transaction, as PocketBase's (docs/batch.md)."""
