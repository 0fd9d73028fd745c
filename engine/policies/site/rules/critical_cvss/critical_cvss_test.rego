package site.rules.critical_cvss_test

import rego.v1

import data.site.rules.critical_cvss
import data.vigil.testing.fixtures_test as fx

test_critical_unpatched_is_rejected if {
	vs := [json.patch(fx.vuln_in_window, [{"op": "replace", "path": "/max_cvss", "value": 9.8}])]
	patched := fx.patched_none
	deny := critical_cvss.deny with input.vulnerabilities as vs with input.patched_configuration as patched
	deny == {{
		"rule": "critical_cvss_unpatched",
		"message": "CVE-2026-0001 has CVSS 9.8 >= 9.0 and the host has no attested patched configuration (site policy)",
		"vulnerability": "CVE-2026-0001",
	}}
}

test_critical_with_patched_configuration_ready_is_not_rejected if {
	vs := [json.patch(fx.vuln_in_window, [{"op": "replace", "path": "/max_cvss", "value": 9.8}])]
	patched := fx.patched_ready
	deny := critical_cvss.deny with input.vulnerabilities as vs with input.patched_configuration as patched
	count(deny) == 0
}

test_below_threshold_is_not_rejected if {
	vs := [fx.vuln_in_window]
	patched := fx.patched_none
	deny := critical_cvss.deny with input.vulnerabilities as vs with input.patched_configuration as patched
	count(deny) == 0
}

test_site_rule_turns_a_default_delay_into_reject if {
	req := fx.request
	host := fx.host
	vs := [json.patch(fx.vuln_in_window, [{"op": "replace", "path": "/max_cvss", "value": 9.8}])]
	patched := fx.patched_none
	now := fx.decision_time
	d := data.vigil.decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	d.verdict == "reject"
	{r.rule | some r in d.reasons} == {"critical_cvss_unpatched"}
}
