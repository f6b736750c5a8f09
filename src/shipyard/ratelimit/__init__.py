"""Rate limiting in PocketBase's model (docs/ratelimit.md): rules from `/api/settings`,
counted per client address for guests and per auth record for users, with GCRA in memory
or in Redis, and the IETF RateLimit headers."""
