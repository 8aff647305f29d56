"""In-process tests of the child package, one module per child module."""
