"""The WebAssembly spec tests (spec/wast): every supported assertion passes on the reference."""
import pytest

import frontend
from conftest import WAST_DIR

WAST_FILES = sorted(path.name for path in WAST_DIR.glob("*.wast"))


@pytest.mark.parametrize("name", WAST_FILES)
def test_spec_file_has_no_failures(name):
    skips, failures = {}, []
    passed, failed, skipped = frontend.spectest_file(WAST_DIR / name, frontend.reference_runner, skips, failures)
    assert failures == []
    assert failed == 0
    assert passed > 0                 # every file has something wasmtf runs


def test_command_prints_one_line_per_file_and_a_total(capsys):
    paths = [WAST_DIR / "i32.wast", WAST_DIR / "nop.wast"]
    assert frontend.command_spectest(paths) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].startswith("i32.wast: ") and lines[-2].startswith("nop.wast: ")
    assert lines[-1].startswith("total: ") and lines[-1].endswith("skipped")
    assert any(line.startswith("skipped") and "assert_invalid" in line for line in lines)


def test_a_wrong_result_is_a_failure(tmp_path, capsys):
    script = tmp_path / "wrong.wast"
    script.write_text('(module (func (export "f") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 3))))\n'
                      '(assert_return (invoke "f" (i32.const 5)) (i32.const 15))\n'
                      '(assert_return (invoke "f" (i32.const 5)) (i32.const 16))\n'
                      '(assert_trap (invoke "f" (i32.const 5)) "unreachable")\n'
                      '(assert_return (invoke "f" (f32.const 5)) (i32.const 15))\n')
    assert frontend.command_spectest([script]) == 1
    out = capsys.readouterr().out
    assert "wrong.wast: 1 passed, 2 failed, 1 skipped" in out
    assert "FAILED wrong.wast:3: f(5): expected [16], got [15]" in out


def test_state_survives_traps(tmp_path):
    """Stores before a trap are replayed in the program that continues after it."""
    script = tmp_path / "state.wast"
    script.write_text('(module (memory 1)\n'
                      '  (func (export "put") (param i32) (i32.store (i32.const 8) (local.get 0)))\n'
                      '  (func (export "get") (result i32) (i32.load (i32.const 8)))\n'
                      '  (func (export "boom") (result i32) (i32.load (i32.const 65535))))\n'
                      '(invoke "put" (i32.const 42))\n'
                      '(assert_trap (invoke "boom") "out of bounds")\n'
                      '(assert_return (invoke "get") (i32.const 42))\n'
                      '(invoke "put" (i32.const 7))\n'
                      '(assert_trap (invoke "boom") "out of bounds")\n'
                      '(assert_return (invoke "get") (i32.const 7))\n')
    skips, failures = {}, []
    assert frontend.spectest_file(script, frontend.reference_runner, skips, failures) == (4, 0, 0)


def test_parse_wast_strings_and_comments():
    forms = frontend.parse_wast('(; block (; nested ;) ;) (module) ;; line\n(invoke "a\\n\\41\\u{e9}" (i32.const -0x1_0))')
    assert [tree for tree, _, _ in forms] == [["module"], ["invoke", b"a\nA\xc3\xa9", ["i32.const", "-0x1_0"]]]
    assert frontend.wast_integer("-0x1_0") == -16


def test_call_indirect_dispatch_and_traps(tmp_path):
    script = tmp_path / "indirect.wast"
    script.write_text('''(module
  (type $unary (func (param i32) (result i32)))
  (type $nullary (func (result i32)))
  (table 6 funcref)
  (elem (i32.const 1) $double $seven $double)
  (func $double (param i32) (result i32) (i32.add (local.get 0) (local.get 0)))
  (func $seven (result i32) (i32.const 7))
  (func (export "unary") (param i32 i32) (result i32) (call_indirect (type $unary) (local.get 0) (local.get 1)))
  (func (export "nullary") (param i32) (result i32) (call_indirect (type $nullary) (local.get 0))))
(assert_return (invoke "unary" (i32.const 21) (i32.const 1)) (i32.const 42))
(assert_return (invoke "unary" (i32.const 5) (i32.const 3)) (i32.const 10))
(assert_return (invoke "nullary" (i32.const 2)) (i32.const 7))
(assert_trap (invoke "unary" (i32.const 5) (i32.const 2)) "indirect call type mismatch")
(assert_trap (invoke "unary" (i32.const 5) (i32.const 0)) "uninitialized element")
(assert_trap (invoke "unary" (i32.const 5) (i32.const 6)) "undefined element")
(assert_trap (invoke "nullary" (i32.const -1)) "undefined element")
''')
    skips, failures = {}, []
    assert frontend.spectest_file(script, frontend.reference_runner, skips, failures) == (7, 0, 0)


def test_transformer_runs_a_spec_file(capsys):
    """A sample of the spec cases inside the compiled transformer (all files: slow)."""
    assert frontend.command_spectest([WAST_DIR / "local_get.wast"], transformer=True) == 0
    assert "local_get.wast: 13 passed, 0 failed" in capsys.readouterr().out


@pytest.mark.slow
def test_every_spec_file_through_the_transformer():
    assert frontend.command_spectest(sorted(WAST_DIR.glob("*.wast")), transformer=True) == 0
