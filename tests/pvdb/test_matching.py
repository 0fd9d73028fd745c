"""The fast path (precomputed sort keys) answers exactly like the library comparisons."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.pvdb import matching, versions

SCHEMES = ("kernel", "semver", "generic")

numbers = st.integers(min_value=0, max_value=40)
version_text = st.builds(
    lambda parts, rc: ".".join(map(str, parts)) + (f"-rc{rc}" if rc else ""),
    st.lists(numbers, min_size=2, max_size=3),
    st.one_of(st.none(), st.integers(min_value=1, max_value=9)),
)
end_text = st.one_of(
    version_text,
    st.builds(lambda a, b: f"{a}.{b}.*", numbers, numbers),
    st.just("*"),
)


@settings(max_examples=600, deadline=None)
@given(
    scheme=st.sampled_from(SCHEMES),
    version=version_text,
    start=st.one_of(st.none(), st.just("0"), version_text),
    end=st.one_of(st.none(), end_text),
    start_inclusive=st.booleans(),
    end_inclusive=st.booleans(),
    exact=st.one_of(st.none(), version_text),
)
def test_keyed_statements_agree_with_library_comparisons(
    scheme: str, version: str, start: str | None, end: str | None, start_inclusive: bool,
    end_inclusive: bool, exact: str | None,
) -> None:
    if scheme == "generic" and "-rc" in version + (start or "") + (end or "") + (exact or ""):
        return  # generic dotted versions carry no pre-release part in this test
    row = ("CVE-1", "cve5", "CVE-1", 0, "product", scheme, "affected", "unaffected",
           start, start_inclusive, end, end_inclusive, exact, None, None, None, None)
    compiled = matching._compile(row)
    plain = matching.Statement(*row)
    assert compiled.keyed
    vkey = versions.sort_key(scheme, version)
    assert vkey is not None
    assert matching._contains_key(compiled, vkey) == matching._contains(plain, version)


def test_unkeyable_statements_keep_the_library_path() -> None:
    row = ("CVE-1", "osv", "X", 0, "package", "rpm", "affected", "unaffected", None, True,
           "15.8-4.el9_3", False, None, "15.8-4.el9_3", None, "9", None)
    assert not matching._compile(row).keyed
