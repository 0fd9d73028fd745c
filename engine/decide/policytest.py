"""``vigil policy test``: run Rego unit tests like ``opa test``.

Every rule named ``test_*`` in a module whose file ends in ``_test.rego`` is one test.
A test passes when it evaluates to ``true``; it fails when it is false or undefined, and
errors when evaluation fails. Output of ``print()`` during a failing test is kept, as
``opa test`` shows it, so a test can print the values it compared. Tests run on
regorus, the default evaluator; ``tests/decide`` checks that rego-cpp decides the same
documents the same way.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from engine.decide import bundle as _bundle
from engine.decide.errors import PolicyError
from engine.decide.evaluators.regorus_engine import located, new_engine, rule_value
from engine.decide.explain import Explanation, explain

_TEST_RULE = re.compile(r"^(test_\w+)\s*(?:if\b|:=|=|\{)", re.MULTILINE)


@dataclass(frozen=True)
class TestResult:
    package: str
    name: str
    file: str
    status: str
    """``pass``, ``fail`` or ``error``."""
    detail: str
    """``false``/``undefined`` for a failure, the message for an error."""
    output: str
    """What ``print()`` wrote while the test ran."""
    duration_ns: int
    explanation: Explanation | None = None
    """For a failure: the failing expression, where it is, the values involved."""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def discover(policy: _bundle.PolicySet) -> list[tuple[str, str, str]]:
    """(package, test rule, file) of every test, in file order."""
    tests: list[tuple[str, str, str]] = []
    for path, source in sorted(policy.test_modules.items()):
        if policy.test_scope and not path.startswith(policy.test_scope):
            continue
        package = _bundle.package_of(source)
        if package is None:
            raise PolicyError("no `package` line", file=path)
        seen: set[str] = set()
        for match in _TEST_RULE.finditer(source):
            name = match.group(1)
            if name not in seen:
                seen.add(name)
                tests.append((package, name, path))
    return tests


def load(path: Path) -> _bundle.PolicySet:
    """Every module (tests included) and data file under ``path``.

    ``path`` may be the policy folder (``engine/policies/``) or a root or sub-folder inside
    it (``engine/policies/vigil``): the policy folder is found from the first module's
    package, which names the module's folder.
    """
    path = path.resolve()
    if not path.is_dir():
        return _bundle.load_directory(path, include_tests=True)
    first = next(iter(sorted(path.rglob("*.rego"))), None)
    if first is None:
        raise PolicyError(f"no Rego modules under {path}")
    package = _bundle.package_of(first.read_text(encoding="utf-8"))
    if package is None:
        raise PolicyError("no `package` line", file=str(first))
    depth = len(package.split("."))
    base = first.parent
    for _ in range(depth):
        base = base.parent
    if base == path or base not in path.parents:
        return _with_vigil_library(_bundle.load_directory(path, include_tests=True))
    # every root of the policy folder is loaded (the tests of one import the others,
    # such as the vigil library); only the tests under ``path`` run
    whole = _bundle.load_directory(base, include_tests=True)
    scope = path.relative_to(base).as_posix() + "/"
    return _with_vigil_library(dataclasses.replace(whole, test_scope=(scope,)))


def load_tests_of_roots(folder: Path, roots: list[str]) -> _bundle.PolicySet:
    """The policy folder with its tests, running those of ``roots`` (what a bundle of
    those roots is built from)."""
    whole = _with_vigil_library(_bundle.load_directory(folder, include_tests=True))
    return dataclasses.replace(whole, test_scope=tuple(f"{r}/" for r in roots))


def _with_vigil_library(policy: _bundle.PolicySet) -> _bundle.PolicySet:
    """``policy``, and the installed ``vigil`` root when its modules import
    ``data.vigil`` but it has none (site policies kept in a folder of their own); the
    tests that run stay those of ``policy``."""
    if any(p.startswith("vigil/") for p in policy.modules) or not any(
            "data.vigil." in source for source in policy.modules.values()):
        return policy
    library = _bundle.load_directory(_bundle.SOURCE_POLICIES, ["vigil"], include_tests=True)
    scope = policy.test_scope or tuple(sorted({p.split("/", 1)[0] + "/"
                                               for p in policy.modules}))
    return dataclasses.replace(
        policy, modules={**library.modules, **policy.modules},
        data_files={**library.data_files, **policy.data_files},
        roots=tuple(dict.fromkeys((*policy.roots, "vigil"))), test_scope=scope)


@dataclass(frozen=True)
class FileCoverage:
    """Which lines of one policy module the tests evaluated (OPA's coverage report
    counts the same: lines holding an expression)."""

    covered: list[int]
    not_covered: list[int]

    @property
    def percent(self) -> float:
        total = len(self.covered) + len(self.not_covered)
        return 100.0 if total == 0 else 100.0 * len(self.covered) / total


@dataclass(frozen=True)
class Coverage:
    """Coverage of the policy modules (tests left out) by a test run."""

    files: dict[str, FileCoverage]

    @property
    def percent(self) -> float:
        covered = sum(len(f.covered) for f in self.files.values())
        total = covered + sum(len(f.not_covered) for f in self.files.values())
        return 100.0 if total == 0 else 100.0 * covered / total


def run(policy: _bundle.PolicySet, *, name_filter: str | None = None) -> list[TestResult]:
    """Run every test of ``policy``; raise PolicyError naming the file when it does not
    parse."""
    return _run(policy, name_filter, coverage=False)[0]


def run_with_coverage(policy: _bundle.PolicySet, *, name_filter: str | None = None
                      ) -> tuple[list[TestResult], Coverage]:
    """:func:`run`, and which lines of the policy modules the tests evaluated."""
    results, coverage = _run(policy, name_filter, coverage=True)
    assert coverage is not None
    return results, coverage


def _run(policy: _bundle.PolicySet, name_filter: str | None, *, coverage: bool
         ) -> tuple[list[TestResult], Coverage | None]:
    engine = new_engine(policy, include_tests=True)
    engine.set_gather_prints(True)
    engine.set_enable_coverage(coverage)
    engine.set_input_json("{}")
    try:  # the modules are checked (safety, undefined functions…) on first evaluation
        engine.eval_query_as_json("true")
    except RuntimeError as exc:
        where, line, message = located(exc)
        raise PolicyError(f"policy does not compile: {message}", file=where,
                          line=line) from None
    results: list[TestResult] = []
    pattern = re.compile(name_filter) if name_filter else None
    for package, name, file in discover(policy):
        if pattern and not pattern.search(f"{package}.{name}"):
            continue
        started = time.perf_counter_ns()
        try:
            defined, value = rule_value(engine, f"data.{package}.{name}")
            error = None
        except RuntimeError as exc:
            defined, value = False, None
            where, line, message = located(exc)
            error = f"{where}:{line}: {message}" if where else message
        elapsed = time.perf_counter_ns() - started
        text = "".join(f"{line}\n" for line in engine.take_prints())
        if error is not None:
            status, detail = "error", error
        elif defined and value is True:
            status, detail = "pass", ""
        else:
            status, detail = "fail", repr(value) if defined else "undefined"
        why = explain(policy, package, name, file) if status == "fail" else None
        results.append(TestResult(package=package, name=name, file=file, status=status,
                                  detail=detail, output=text, duration_ns=elapsed,
                                  explanation=why))
    if not coverage:
        return results, None
    report = json.loads(engine.get_coverage_report_as_json())
    files = {entry["path"]: FileCoverage(covered=sorted(entry.get("covered", [])),
                                         not_covered=sorted(entry.get("not_covered", [])))
             for entry in report.get("files", [])
             if entry["path"] in policy.policy_modules}
    return results, Coverage(files=files)
