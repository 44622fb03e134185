"""The reference interpreter and program files against the contract's worked examples."""
import pytest

from conftest import EXAMPLES_DIR
import reference

EXAMPLE_TRACES = sorted(EXAMPLES_DIR.rglob("*_ref.txt"))


def program_path(ref_path):
    return ref_path.with_name(ref_path.name[:-len("_ref.txt")] + ".txt")


@pytest.mark.parametrize("ref_path", EXAMPLE_TRACES, ids=lambda p: p.stem)
def test_example_reproduced_exactly(ref_path):
    instructions, input_bytes = reference.read_program(program_path(ref_path))
    prompt = reference.program_tokens(instructions, input_bytes)
    trace = reference.run_reference(instructions, input_bytes)
    assert reference.format_trace_file(prompt, trace) == ref_path.read_text()
