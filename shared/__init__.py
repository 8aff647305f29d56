"""The WeRSS Cascade wire contract, shared by the parent and the child.

Standard library and marshmallow only: no Flask, SQLAlchemy or requests here.
"""

CONTRACT_VERSION = "v1"
