"""Shared test fixtures: where the contract's worked examples live."""
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
SPEC_DIR = REPO / "spec"                 # a copy of ../shared/spec (the contract)
EXAMPLES_DIR = SPEC_DIR / "examples"     # program files and their *_ref.txt traces
WAST_DIR = SPEC_DIR / "wast"             # WebAssembly core spec tests

sys.path.insert(0, str(REPO))            # the modules live flat at the repository root
