"""End-to-end tests: real gunicorn parents and real child processes over real HTTP."""
