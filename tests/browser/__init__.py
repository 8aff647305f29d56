"""The admin console in a real Chromium, against a real gunicorn parent and child."""
