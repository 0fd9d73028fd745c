package vigil.rules.vulnerabilities_test

import rego.v1

import data.vigil.rules.vulnerabilities as vulns
import data.vigil.testing.fixtures_test as fx

_rules(findings) := {r.rule | some r in findings}

test_kev_without_patched_configuration_is_rejected if {
	host := fx.host
	vs := [fx.vuln_kev]
	patched := fx.patched_preparing
	deny := vulns.deny with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	deny == {{
		"rule": "kev_without_patched_configuration",
		"message": "CVE-2026-0004 (CVSS 7.8) in linux_kernel 6.6.30 is exploited in the wild (KEV since 2025-12-01) and no attested patched configuration is ready",
		"vulnerability": "CVE-2026-0004",
	}}
}

test_kev_with_patched_configuration_ready_is_patch if {
	host := fx.host
	vs := [fx.vuln_kev]
	patched := fx.patched_ready
	deny := vulns.deny with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	patch := vulns.patch with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	count(deny) == 0
	_rules(patch) == {"patched_configuration_ready"}
}

test_patched_configuration_ready_obligations if {
	host := fx.host
	vs := [fx.vuln_in_window]
	patched := fx.patched_ready
	patch := vulns.patch with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	obligations := vulns.obligations with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	patch == {{
		"rule": "patched_configuration_ready",
		"message": "CVE-2026-0001 (CVSS 8.1) in linux_kernel 6.6.30 is fixed by the attested patched configuration hv-base 1.3.0",
		"vulnerability": "CVE-2026-0001",
	}}
	obligations == {
		{"verdict": "patch", "obligation": {"type": "patch_host", "host": "hv-01", "image": {"name": "hv-base", "version": "1.3.0"}}},
		{"verdict": "patch", "obligation": {"type": "place_on_image", "image": {"name": "hv-base", "version": "1.3.0"}}},
	}
}

test_fix_in_window_is_delay_with_recheck_and_preparation if {
	host := fx.host
	vs := [fx.vuln_in_window]
	patched := fx.patched_none
	now := fx.decision_time
	delay := vulns.delay with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	obligations := vulns.obligations with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	delay == {{
		"rule": "fix_expected_within_window",
		"message": "CVE-2026-0001 (CVSS 8.1) in linux_kernel 6.6.30: fix expected on 2026-01-10 (vendor), within the 30-day window; no patched configuration is ready",
		"vulnerability": "CVE-2026-0001",
	}}
	recheck := vulns.delay_recheck with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	obligations == {{"verdict": "delay", "obligation": {"type": "prepare_patched_configuration", "host": "hv-01", "vulnerabilities": ["CVE-2026-0001"]}}}
	recheck == {"earliest_ns": 1768003200000000000, "available_now": false}
}

test_fix_already_available_rechecks_after_the_interval if {
	host := fx.host
	vs := [json.patch(fx.vuln_in_window, [
		{"op": "replace", "path": "/fix/availability/days_from_now", "value": -3},
		{"op": "replace", "path": "/fix/availability/date", "value": "2025-12-29"},
	])]
	patched := fx.patched_preparing
	now := fx.decision_time
	delay := vulns.delay with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	obligations := vulns.obligations with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	recheck := vulns.delay_recheck with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	some r in delay
	contains(r.message, "available since 2025-12-29")
	count(obligations) == 0
	recheck == {"earliest_ns": null, "available_now": true}
}

test_fix_beyond_window_is_tolerated_with_warning if {
	host := fx.host
	vs := [json.patch(fx.vuln_in_window, [{"op": "replace", "path": "/fix/availability/days_from_now", "value": 31}])]
	patched := fx.patched_none
	delay := vulns.delay with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	warn := vulns.warn with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	count(delay) == 0
	_rules(warn) == {"no_fix_within_window"}
}

test_window_comes_from_bundle_data if {
	host := fx.host
	vs := [fx.vuln_in_window]
	patched := fx.patched_none
	delay := vulns.delay with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with data.vigil.config.window_days as 7
	count(delay) == 0
}

test_no_fix_is_tolerated_with_warning if {
	host := fx.host
	vs := [fx.vuln_no_fix]
	patched := fx.patched_none
	warn := vulns.warn with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	warn == {{
		"rule": "no_fix_within_window",
		"message": "CVE-2026-0002 (CVSS 7.5) in linux_kernel 6.6.30 has no fix expected within 30 days (fix status no_fix); tolerated",
		"vulnerability": "CVE-2026-0002",
	}}
}

test_estimated_fix_date_warns_with_confidence if {
	host := fx.host
	vs := [json.patch(fx.vuln_in_window, [
		{"op": "replace", "path": "/fix/availability/basis", "value": "estimated"},
		{"op": "replace", "path": "/fix/availability/confidence", "value": 0.62},
	])]
	patched := fx.patched_none
	warn := vulns.warn with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	warn == {{
		"rule": "fix_date_estimated",
		"message": "the fix date 2026-01-10 for CVE-2026-0001 is estimated (confidence 0.62)",
		"vulnerability": "CVE-2026-0001",
	}}
}

test_low_vulnerability_is_tolerated if {
	host := fx.host
	vs := [fx.vuln_low]
	patched := fx.patched_none
	warn := vulns.warn with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	delay := vulns.delay with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	count(delay) == 0
	warn == {{
		"rule": "vulnerability_tolerated",
		"message": "CVE-2026-0003 (CVSS 4.3) in linux_kernel 6.6.30 is below the relevance thresholds; tolerated",
		"vulnerability": "CVE-2026-0003",
	}}
}

test_high_epss_makes_a_vulnerability_relevant if {
	host := fx.host
	vs := [json.patch(fx.vuln_low, [{"op": "replace", "path": "/epss/score", "value": 0.5}])]
	patched := fx.patched_none
	warn := vulns.warn with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	_rules(warn) == {"no_fix_within_window"}
}

test_unscored_vulnerability_label if {
	host := fx.host
	vs := [json.patch(fx.vuln_low, [{"op": "replace", "path": "/max_cvss", "value": null}])]
	patched := fx.patched_none
	warn := vulns.warn with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	some r in warn
	r.message == "CVE-2026-0003 (no CVSS score) in linux_kernel 6.6.30 is below the relevance thresholds; tolerated"
}

test_undetermined_vulnerability_warns if {
	host := fx.host
	und := [{"id": "CVE-2026-0009", "component": 0, "reason": "version scheme git is not comparable"}]
	patched := fx.patched_none
	warn := vulns.warn with input.host as host with input.undetermined as und with input.patched_configuration as patched
	warn == {{
		"rule": "vulnerability_undetermined",
		"message": "CVE-2026-0009 names linux_kernel 6.6.30 but its versions cannot be compared: version scheme git is not comparable",
		"vulnerability": "CVE-2026-0009",
	}}
}

# --- coverage ---------------------------------------------------------------------------

_host_with(components) := object.union(fx.host, {"components": components})

_ubuntu_kernel := {"kind": "kernel", "vendor": null, "product": null, "version": "6.8.0-31.31", "cpe": null, "purl": "pkg:deb/ubuntu/linux@6.8.0-31.31?distro=noble"}

_firmware := {"kind": "firmware", "vendor": "acme", "product": "bios", "version": "1.0", "cpe": null, "purl": null}

_tool := {"kind": "os-package", "vendor": "acme", "product": "tool", "version": "1.0", "cpe": null, "purl": null}

test_uncovered_kernel_is_rejected_naming_it if {
	host := _host_with([_ubuntu_kernel])
	cov := [{"component": 0, "status": "uncovered", "sources": [], "notes": []}]
	patched := fx.patched_none
	deny := vulns.deny with input.host as host with input.coverage as cov with input.patched_configuration as patched
	deny == {{
		"rule": "component_not_covered",
		"message": "kernel component #0 (pkg:deb/ubuntu/linux@6.8.0-31.31?distro=noble) is uncovered: no loaded vulnerability source covers it; the host cannot be judged",
		"component": 0,
	}}
}

test_undetermined_firmware_is_rejected_with_the_reason if {
	host := _host_with([_firmware])
	cov := [{"component": 0, "status": "undetermined", "sources": [{"source": "cve5", "scope": "acme/bios", "as_of": null}], "notes": ["release 1.0 is not a version"]}]
	patched := fx.patched_none
	deny := vulns.deny with input.host as host with input.coverage as cov with input.patched_configuration as patched
	some r in deny
	r.rule == "component_not_covered"
	r.message == "firmware bios 1.0 (acme/bios) is undetermined: its version cannot be read in the terms of the sources that cover its product (release 1.0 is not a version); the host cannot be judged"
}

test_covered_and_other_kinds_are_not_refused if {
	host := _host_with([fx.host.components[0], _tool])
	cov := [
		{"component": 0, "status": "covered", "sources": [{"source": "cve5", "scope": "linux/linux_kernel", "as_of": "2025-01-01T00:00:00Z"}], "notes": []},
		{"component": 1, "status": "uncovered", "sources": [], "notes": []},
	]
	patched := fx.patched_none
	deny := vulns.deny with input.host as host with input.coverage as cov with input.patched_configuration as patched
	count(deny) == 0
}

test_documents_without_coverage_are_judged_as_before if {
	host := fx.host
	patched := fx.patched_none
	deny := vulns.deny with input.host as host with input.patched_configuration as patched
	count(deny) == 0
}

# --- fixes on other lines ---------------------------------------------------------------

test_a_fix_only_on_another_line_is_no_patch_in_the_window if {
	host := fx.host
	other := json.patch(fx.vuln_in_window, [
		{"op": "add", "path": "/fix/line", "value": "other"},
		{"op": "replace", "path": "/fix/closing_version", "value": "6.10.3"},
	])
	vs := [other]
	patched := fx.patched_none
	delay := vulns.delay with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	warn := vulns.warn with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	count(delay) == 0
	warn == {{
		"rule": "no_fix_within_window",
		"message": "CVE-2026-0001 (CVSS 8.1) in linux_kernel 6.6.30 has no fix expected within 30 days (fix status fixed, only on another line: 6.10.3); tolerated",
		"vulnerability": "CVE-2026-0001",
	}}
}

test_an_own_line_fix_or_an_estimate_for_this_line_counts if {
	host := fx.host
	own := json.patch(fx.vuln_in_window, [{"op": "add", "path": "/fix/line", "value": "own"}])
	estimated := json.patch(fx.vuln_in_window, [
		{"op": "add", "path": "/fix/line", "value": "other"},
		{"op": "replace", "path": "/fix/availability/basis", "value": "estimated"},
	])
	patched := fx.patched_none
	d1 := vulns.delay with input.host as host with input.vulnerabilities as [own] with input.patched_configuration as patched
	d2 := vulns.delay with input.host as host with input.vulnerabilities as [estimated] with input.patched_configuration as patched
	_rules(d1) == {"fix_expected_within_window"}
	_rules(d2) == {"fix_expected_within_window"}
}
