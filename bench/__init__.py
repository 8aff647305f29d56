"""`make bench`: the parent's hot paths measured as ratios against a bare Flask app.

See bench/README.md. Modules: runner (the run), phases (one measured phase; the leasing,
queue and child sections), load (the client), servers (gunicorn processes), baseline (the
bare app), database (temp SQLite / throwaway PostgreSQL, seeding), leasing (work seeding,
claim/complete requests, the double-lease check), children (real `werss-child run`
processes, /proc figures, local RSS feeds), probe (SQL per request), report (tables, JSON).
"""
