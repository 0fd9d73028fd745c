# METADATA
# title: Shared test fixtures
# description: |
#   Input parts for the policy tests. rego-cpp cannot compile `with input as {...}`
#   over some rules, so tests bind these parts to local variables and replace one
#   input field at a time: `with input.host as host`.
package vigil.testing.fixtures_test

import rego.v1

request := {
	"tenant": "acme",
	"vm": {"name": "web-1", "vcpus": 2, "memory_mib": 4096, "labels": {}},
	"requested_patch_level": null,
	"requested_image": null,
	"patch_level_met": null,
}

host := {
	"id": "hv-01",
	"attestation": {
		"status": "affirming",
		"issued_at": "2026-01-01T00:00:00Z",
		"issued_at_ns": 1767225600000000000,
		"age_seconds": 600,
		"verifier_id": "vigil",
		"image": {"name": "hv-base", "version": "1.2.0"},
		"trust_vector": null,
		"failures": [],
	},
	"components": [{"kind": "kernel", "vendor": "linux", "product": "linux_kernel", "version": "6.6.30", "cpe": null, "purl": null}],
}

decision_time := {"rfc3339": "2026-01-01T00:10:00Z", "ns": 1767226200000000000}

patched_none := {"state": "none", "image": null, "attested": false, "attestation_status": null}

patched_preparing := {"state": "preparing", "image": {"name": "hv-base", "version": "1.3.0"}, "attested": false, "attestation_status": null}

patched_ready := {"state": "ready", "image": {"name": "hv-base", "version": "1.3.0"}, "attested": true, "attestation_status": "affirming"}

# A relevant vulnerability (CVSS 8.1) whose vendor fix lands in 9 days.
vuln_in_window := {
	"id": "CVE-2026-0001", "component": 0, "title": "t", "max_cvss": 8.1, "cvss": [],
	"kev": null, "epss": null,
	"fix": {"status": "fixed", "closing_version": "6.6.31", "advisories": [], "patch_ids": [], "availability": {
		"date": "2026-01-10", "date_ns": 1768003200000000000, "days_from_now": 9,
		"basis": "vendor", "confidence": 1.0,
	}},
}

# A relevant vulnerability with no fix.
vuln_no_fix := {
	"id": "CVE-2026-0002", "component": 0, "title": "t", "max_cvss": 7.5, "cvss": [],
	"kev": null, "epss": null,
	"fix": {"status": "no_fix", "closing_version": null, "advisories": [], "patch_ids": [], "availability": {
		"date": null, "date_ns": null, "days_from_now": null, "basis": "none", "confidence": null,
	}},
}

# A vulnerability below every threshold.
vuln_low := {
	"id": "CVE-2026-0003", "component": 0, "title": "t", "max_cvss": 4.3, "cvss": [],
	"kev": null, "epss": {"score": 0.01, "percentile": 0.2, "date": "2026-01-01"},
	"fix": {"status": "no_fix", "closing_version": null, "advisories": [], "patch_ids": [], "availability": {
		"date": null, "date_ns": null, "days_from_now": null, "basis": "none", "confidence": null,
	}},
}

# A KEV-listed vulnerability (CVSS 7.8).
vuln_kev := {
	"id": "CVE-2026-0004", "component": 0, "title": "t", "max_cvss": 7.8, "cvss": [],
	"kev": {"date_added": "2025-12-01", "due_date": "2025-12-22", "known_ransomware_use": false},
	"epss": null,
	"fix": {"status": "fixed", "closing_version": "6.6.31", "advisories": [], "patch_ids": [], "availability": {
		"date": "2025-11-20", "date_ns": 1763596800000000000, "days_from_now": -42,
		"basis": "vendor", "confidence": 1.0,
	}},
}
