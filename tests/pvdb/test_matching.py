"""The fast path (precomputed sort keys) answers exactly like the library comparisons."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.pvdb import matching, statements, versions

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
    compiled = statements.compile_row(row)
    plain = statements.Statement(*row)
    assert compiled.keyed
    vkey = versions.sort_key(scheme, version)
    assert vkey is not None
    assert matching._contains_key(compiled, vkey) == matching._contains(plain, version)


def test_unkeyable_statements_keep_the_library_path() -> None:
    row = ("CVE-1", "osv", "X", 0, "package", "rpm", "affected", "unaffected", None, True,
           "15.8-4.el9_3", False, None, "15.8-4.el9_3", None, "9", None)
    assert not statements.compile_row(row).keyed


# --- the prefilter drops only what the exact evaluation finds unaffected ---------------

statement_spec = st.tuples(
    st.sampled_from(("affected", "unaffected", "unknown")),      # status
    st.one_of(st.none(), st.just("0"), version_text),            # start
    st.one_of(st.none(), end_text),                              # end
    st.booleans(), st.booleans(),                                # inclusive flags
    st.one_of(st.none(), version_text, st.just("*")),            # exact
    st.one_of(st.none(), st.just("9")),                          # release
)


def _rows(vuln: str, group: int, scheme: str, default: str,
          specs: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [(vuln, "cve5", vuln, group, "product", scheme, status, default, start, lo_inc,
             end, hi_inc, exact, end if status == "affected" and end not in (None, "*")
             and not str(end).endswith(".*") else None, None, release, None)
            for status, start, end, lo_inc, hi_inc, exact, release in specs]


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(("kernel", "semver")),
    vulns=st.lists(st.lists(st.tuples(st.sampled_from(("affected", "unaffected", "unknown")),
                                      st.lists(statement_spec, min_size=1, max_size=4),
                                      st.booleans()),  # stated in git (not comparable)
                            min_size=1, max_size=3), min_size=1, max_size=12),
    host_versions=st.lists(version_text, min_size=1, max_size=4),
)
def test_prefilter_keeps_every_affected_or_undetermined_vulnerability(
    scheme: str, vulns: list[list[tuple[str, list[tuple[object, ...]], bool]]],
    host_versions: list[str],
) -> None:
    by_vuln: dict[str, list[statements.Group]] = {}
    for v, groups in enumerate(vulns):
        vuln = f"CVE-2000-{v:04d}"
        by_vuln[vuln] = [tuple(statements.compile_row(row) for row in
                               _rows(vuln, g, "git" if git else scheme, default, specs))
                         for g, (default, specs, git) in enumerate(groups)]
    key = ("product", "linux", "linux_kernel")
    index = matching.MatchIndex({key: by_vuln}, generation=1)
    for version in host_versions:
        ck = matching.ComponentKey(key, version, None, None)
        every = {vuln: matching.evaluate([(ck, g) for g in groups])
                 for vuln, groups in by_vuln.items()}
        kept = dict(index.verdicts([ck]))
        wanted = {vuln for vuln, verdict in every.items() if verdict.status != "unaffected"}
        assert wanted <= set(kept), (version, wanted - set(kept))
        for vuln, verdict in kept.items():
            assert verdict.status == every[vuln].status


def test_prefilter_leaves_out_what_surely_does_not_affect_the_version() -> None:
    rows = [("CVE-2000-0001", "cve5", "CVE-2000-0001", 0, "product", "kernel", "affected",
             "unaffected", "6.6", True, "6.6.31", False, None, "6.6.31", None, None, None),
            ("CVE-2000-0002", "osv", "X", 0, "product", "kernel", "affected", "unaffected",
             None, True, "6.6.31", False, None, None, None, "9", None)]  # a release: exact path
    key = ("product", "linux", "linux_kernel")
    groups = {row[0]: [(statements.compile_row(row),)] for row in rows}
    index = matching.MatchIndex({key: groups}, generation=1)
    old = dict(index.verdicts([matching.ComponentKey(key, "6.6.30", None, None)]))
    new = dict(index.verdicts([matching.ComponentKey(key, "6.6.40", None, None)]))
    assert old["CVE-2000-0001"].status == "affected"
    assert "CVE-2000-0001" not in new            # proven unaffected without evaluation
    assert new["CVE-2000-0002"].status == "unaffected"  # evaluated: it has a release
