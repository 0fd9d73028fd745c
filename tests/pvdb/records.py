"""Builders for feed records written by the tests themselves (no shared data needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

KERNEL_CNA_ORG = "f4215fc3-5b6b-47ff-a258-f7189bd81038"


def cve5_record(
    cve_id: str,
    *,
    updated: str | None = "2024-07-01T00:00:00.000Z",
    published: str = "2024-06-01T00:00:00.000Z",
    state: str = "PUBLISHED",
    title: str = "test vulnerability",
    affected: list[dict[str, Any]] | None = None,
    metrics: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A CVE JSON 5.1 record with the given affected entries."""
    meta: dict[str, Any] = {"cveId": cve_id, "assignerOrgId": KERNEL_CNA_ORG, "state": state}
    if updated:
        meta["dateUpdated"] = updated
        meta["datePublished"] = published
    cna: dict[str, Any] = {"providerMetadata": {"orgId": KERNEL_CNA_ORG}}
    if state == "REJECTED":
        cna["rejectedReasons"] = [{"lang": "en", "value": "duplicate"}]
    else:
        cna.update({
            "title": title,
            "descriptions": [{"lang": "en", "value": title}],
            "affected": affected if affected is not None else kernel_affected("6.4", ["6.6.39"]),
            "references": [{"url": f"https://example.org/{cve_id}"}],
        })
        if metrics is not None:
            cna["metrics"] = metrics
    return {"dataType": "CVE_RECORD", "dataVersion": "5.1", "cveMetadata": meta,
            "containers": {"cna": cna}}


def kernel_affected(first: str, fixed: list[str], mainline: str | None = None
                    ) -> list[dict[str, Any]]:
    """The kernel CNA's semver shape: affected from ``first``, fixed per stable branch."""
    versions: list[dict[str, Any]] = [
        {"version": first, "status": "affected"},
        {"version": "0", "lessThan": first, "status": "unaffected", "versionType": "semver"},
    ]
    for v in fixed:
        branch = ".".join(v.split(".")[:2])
        versions.append({"version": v, "lessThanOrEqual": f"{branch}.*",
                         "status": "unaffected", "versionType": "semver"})
    if mainline:
        versions.append({"version": mainline, "lessThanOrEqual": "*", "status": "unaffected",
                         "versionType": "original_commit_for_fix"})
    return [{"vendor": "Linux", "product": "Linux", "defaultStatus": "affected",
             "versions": versions}]


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data))
    return path
