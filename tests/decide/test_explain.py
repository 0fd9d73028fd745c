"""The failing expression of a Rego test, read from regorus's parse of the module: braces,
quotes and comment marks inside strings, expressions over several lines, non-ASCII text
before the expression (spans are byte offsets), ``not``, string sides of a comparison and
variables bound by ``some … in``."""

from __future__ import annotations

import textwrap

from engine.decide.bundle import PolicySet
from engine.decide.explain import explain

FILE = "t/t_test.rego"


def _explain(body: str, name: str = "test_x") -> tuple[int, str, dict[str, str]] | None:
    source = "package t_test\n\nimport rego.v1\n\n" + textwrap.dedent(body)
    policy = PolicySet(modules={FILE: source}, data_files={}, roots=("t_test",),
                       revision="r", origin="test")
    why = explain(policy, "t_test", name, FILE)
    return None if why is None else (why.line, why.expression, why.values)


def test_strings_with_braces_and_comment_marks_do_not_split_expressions() -> None:
    got = _explain("""\
        # a comment { with a brace
        test_x if {
        \tx := {"a": "} # not a comment", "b": [1,
        \t\t2]}
        \tx.b[1] == 3 # the failing one
        }
        """)
    assert got == (9, "x.b[1] == 3", {"x.b[1]": "2",
                                        "x": '{"a": "} # not a comment", "b": [1, 2]}'})


def test_a_string_side_keeps_its_quotes_after_non_ascii_text() -> None:
    got = _explain("""\
        test_x if {
        \tname := "é—ü"; name == "e"
        }
        """)
    assert got == (6, 'name == "e"', {"name": '"é—ü"'})


def test_not_shows_what_it_negates() -> None:
    got = _explain("""\
        test_x if {
        \tsome v in [2]
        \tv > 1
        \tnot v == 2
        }
        """)
    assert got == (8, "not v == 2", {"v == 2": "true", "v": "2"})


def test_a_test_whose_expressions_all_hold_is_not_explained() -> None:
    assert _explain("""\
        test_x if {
        \ttrue
        }
        """) is None


def test_an_unknown_test_is_not_explained() -> None:
    assert _explain("test_x if { true }\n", name="test_y") is None
