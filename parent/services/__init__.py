"""Business rules and transactions. Services flush; parent/unit_of_work.py commits the request."""
