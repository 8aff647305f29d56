"""The WeRSS Cascade child agent (see issue: child agent)."""
