"""Deployment tests: the compose file and the image, run for real by `make compose-test`."""
