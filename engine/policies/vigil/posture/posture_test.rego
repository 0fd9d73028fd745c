package vigil.posture_test

import rego.v1

import data.vigil.posture
import data.vigil.testing.fixtures_test as fx

# A host document (input schema version 2) has the host, its vulnerabilities, coverage
# and patched configuration, and no request or decision time.

_rules(findings) := {f.rule | some f in findings}

test_kev_without_patched_configuration_is_a_host_deny if {
	host := fx.host
	vs := [fx.vuln_kev, fx.vuln_low]
	patched := fx.patched_none
	p := posture.result with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	_rules(p.deny) == {"kev_without_patched_configuration"}
	_rules(p.warn) == {"vulnerability_tolerated"}
	count(p.patch) == 0
	count(p.delay) == 0
	p.facts == {"delay_recheck": null}
}

test_delays_carry_their_recheck_facts if {
	host := fx.host
	vs := [fx.vuln_in_window]
	patched := fx.patched_none
	p := posture.result with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	_rules(p.delay) == {"fix_expected_within_window"}
	p.facts.delay_recheck == {"earliest_ns": 1768003200000000000, "available_now": false}
	{o.obligation.type | some o in p.obligations} == {"prepare_patched_configuration"}
}

test_patched_configuration_ready_gives_patch_findings_and_obligations if {
	host := fx.host
	vs := [fx.vuln_kev, fx.vuln_in_window]
	patched := fx.patched_ready
	p := posture.result with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched
	count(p.deny) == 0
	{f.vulnerability | some f in p.patch} == {"CVE-2026-0004", "CVE-2026-0001"}
	{[o.verdict, o.obligation.type] | some o in p.obligations} == {["patch", "patch_host"], ["patch", "place_on_image"]}
}

test_exceptions_apply_to_host_findings if {
	exceptions := data.vigil.rules.sample_exception_test.exception
	host := fx.host
	vs := [fx.vuln_kev]
	patched := fx.patched_none
	p := posture.result with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with data.site.findings.exception as exceptions
	count(p.deny) == 0
	some w in p.warn
	w.rule == "kev_without_patched_configuration"
	startswith(w.message, "excepted: ")
}

test_uncovered_kernel_is_a_host_deny if {
	host := fx.host
	vs := []
	cov := [{"component": 0, "status": "uncovered", "sources": [], "notes": []}]
	patched := fx.patched_none
	p := posture.result with input.host as host with input.vulnerabilities as vs with input.coverage as cov with input.patched_configuration as patched
	_rules(p.deny) == {"component_not_covered"}
}
