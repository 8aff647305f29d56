"""Fakes of third-party services and reusable test harnesses."""
