"""`make bench`: the parent's hot paths measured as ratios against a bare Flask app.

See bench/README.md. Modules: runner (the run), load (the client), servers (gunicorn
processes), baseline (the bare app), database (temp SQLite / throwaway PostgreSQL, seeding),
probe (SQL per request), report (table and JSON).
"""
