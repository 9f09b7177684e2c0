"""The benchmark scripts, each run as a file (``python benchmarks/NAME.py``), and the modules they share, imported
as ``benchmarks.common`` and the like by the scripts and the tests (``README.md`` says which is which)."""
