"""CPU-scale reproductions of each method's central claim; each writes ``results/<name>.json``."""
