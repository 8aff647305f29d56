"""Business rules and transactions. Services flush; the request's auth decorator commits."""
