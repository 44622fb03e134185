"""The front end: decoder errors, exact i32 lowering against wasmtime, C compilation."""
import pytest

import frontend
import reference
from conftest import REPO

EXAMPLES = REPO / "examples"


def run(instructions, input_bytes=None):
    machine = reference.execute(instructions, input_bytes)
    return machine.status, bytes(machine.output)


def test_compile_c_hello(tmp_path):
    source = tmp_path / "greet.c"
    source.write_text('void compute(const char *input) { print_str("hi "); print_str(input); putchar(10); }\n')
    binary = frontend.compile_c(source)
    instructions = frontend.lower_module(frontend.decode_module(binary))
    assert instructions[0][0] == "input_base"
    assert run(instructions, b"Ada") == ("halt", b"hi Ada\n")


def test_compile_c_error_shows_compiler_message(tmp_path):
    source = tmp_path / "broken.c"
    source.write_text("void compute(void) { this is not C; }\n")
    with pytest.raises(frontend.WasmError, match="broken.c"):
        frontend.compile_c(source)


@pytest.mark.parametrize("name,input_text,expected", [("hello", "Ada", b"Hello, Ada!\n")])
def test_prebuilt_examples(name, input_text, expected):
    instructions, input_bytes = frontend.load_program_file(EXAMPLES / ("%s.wasm" % name), input_text)
    assert run(instructions, input_bytes) == ("halt", expected)
