"""Site rules that exist but are not wired into the decision.

The default decision (``data.vigil.decision``) reads an administrator's findings from
``data.site.findings`` only. A rules package under ``data.site.rules`` whose ``deny``
(or ``patch``, ``delay``, ``warn``, ``exception``, ``obligations``) that package does not
read is evaluated by nobody: it would be ignored without a word. This finds them, from
the sources (``vigil policy test`` and ``vigil bundle build`` report them).
"""

from __future__ import annotations

import re

from engine.decide import bundle as _bundle

KINDS = ("deny", "patch", "delay", "warn", "exception", "obligations")
_HEAD = re.compile(rf"^({'|'.join(KINDS)})\b\s*(?:contains|:=|=|if|\{{|\[)", re.MULTILINE)
_IMPORT = re.compile(r"^import\s+(data\.[\w.]+)(?:\s+as\s+(\w+))?\s*$", re.MULTILINE)


def _names_in(findings: str, package: str) -> set[str]:
    """How ``findings`` can refer to ``data.<package>``: its full name, and the name
    under which it is imported."""
    full = f"data.{package}"
    names = {full}
    for imported, alias in _IMPORT.findall(findings):
        if imported == full:
            names.add(alias or imported.rsplit(".", 1)[-1])
        elif full.startswith(imported + "."):
            names.add((alias or imported.rsplit(".", 1)[-1]) + full[len(imported) :])
    return names


def unwired(policy: _bundle.PolicySet) -> list[str]:
    """``data.site.rules.X.KIND`` of every finding kind a site rules module defines that
    ``data.site.findings`` does not read, with the module's path: ``path: rule``."""
    findings = "\n".join(
        source
        for source in policy.policy_modules.values()
        if _bundle.package_of(source) == "site.findings"
    )
    missing: list[str] = []
    for path, source in sorted(policy.policy_modules.items()):
        package = _bundle.package_of(source) or ""
        if not package.startswith("site.rules."):
            continue
        names = _names_in(findings, package)
        for kind in dict.fromkeys(_HEAD.findall(source)):
            if not any(re.search(rf"(?<![\w.]){re.escape(n)}\.{kind}\b", findings) for n in names):
                missing.append(f"{path}: data.{package}.{kind}")
    return missing
