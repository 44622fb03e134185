"""The vocabulary is transformer-vm's 915 tokens, in its id order, plus `trap` and
the opcode names of the extended instruction set (SPEC 12), all in code-point order."""
from conftest import SPEC_DIR
import reference


def read_universal_vocabulary():
    rows = (line.rstrip("\n").split("\t") for line in open(SPEC_DIR / "vocab_universal.tsv"))
    return [row[1] for row in rows if not row[0].startswith("#")]


def test_vocabulary_is_transformer_vm_order_plus_trap_and_the_extension():
    universal = read_universal_vocabulary()
    assert len(universal) == 915
    added = {"trap"} | set(reference.EXTENSION_OPCODES)
    assert [token for token in reference.VOCAB if token not in added] == universal
    assert len(reference.VOCAB) == 916 + len(reference.EXTENSION_OPCODES)
    assert reference.VOCAB == sorted(reference.VOCAB)


def test_known_ids_and_spellings():
    assert reference.TOKEN_ID["halt"] == 606             # same as transformer-vm (`trap` sorts after it)
    assert reference.TOKEN_ID["i32.add"] == 608
    assert reference.out_token(0x20) == "out(20)"
    assert reference.out_token(ord("(")) == "out(()"
    assert reference.commit_token(-1, 0, 1) == "commit(-1,sts=0,bt=1)"
    assert reference.input_token(ord("{")) == "7b"
