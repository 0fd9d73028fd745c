package vigil.decision_test

import rego.v1

import data.vigil.decision
import data.vigil.testing.fixtures_test as fx

# Each test replaces every input field (one `with` per field; see fixtures_test.rego).
# The expected verdict is printed on failure with the whole result, like opa test -v.

_expect(d, verdict) if d.verdict == verdict

_expect(d, verdict) if {
	d.verdict != verdict
	print("expected verdict", verdict, "got", d)
	false
}

test_admit_without_vulnerabilities if {
	req := fx.request
	host := fx.host
	vs := []
	patched := fx.patched_none
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	_expect(d, "admit")
	d == {"verdict": "admit", "reasons": set(), "obligations": set(), "warnings": set()}
}

test_admit_with_warnings_for_what_was_tolerated if {
	req := fx.request
	host := fx.host
	vs := [fx.vuln_low, fx.vuln_no_fix]
	patched := fx.patched_none
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	_expect(d, "admit")
	{r.rule | some r in d.warnings} == {"vulnerability_tolerated", "no_fix_within_window"}
}

test_reject_wins_over_everything if {
	req := fx.request
	host := json.patch(fx.host, [{"op": "replace", "path": "/attestation/status", "value": "warning"}])
	vs := [fx.vuln_in_window]
	patched := fx.patched_ready
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	_expect(d, "reject")
	{r.rule | some r in d.reasons} == {"attestation_not_affirming"}
	count(d.obligations) == 0
}

test_reject_kev_without_patched_configuration if {
	req := fx.request
	host := fx.host
	vs := [fx.vuln_kev, fx.vuln_in_window]
	patched := fx.patched_none
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	_expect(d, "reject")
	{r.vulnerability | some r in d.reasons} == {"CVE-2026-0004"}
}

test_patch_when_patched_configuration_ready if {
	req := fx.request
	host := fx.host
	vs := [fx.vuln_kev, fx.vuln_in_window]
	patched := fx.patched_ready
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	_expect(d, "patch")
	{r.vulnerability | some r in d.reasons} == {"CVE-2026-0004", "CVE-2026-0001"}
	{o.type | some o in d.obligations} == {"patch_host", "place_on_image"}
}

test_delay_when_fix_in_window if {
	req := fx.request
	host := fx.host
	vs := [fx.vuln_in_window, fx.vuln_low]
	patched := fx.patched_none
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	_expect(d, "delay")
	{r.rule | some r in d.reasons} == {"fix_expected_within_window"}
	{o.type | some o in d.obligations} == {"recheck_at", "prepare_patched_configuration"}
	{r.rule | some r in d.warnings} == {"vulnerability_tolerated"}
}

test_recheck_at_earliest_fix_date if {
	req := fx.request
	host := fx.host
	later := json.patch(fx.vuln_in_window, [
		{"op": "replace", "path": "/id", "value": "CVE-2026-0010"},
		{"op": "replace", "path": "/fix/availability/days_from_now", "value": 20},
		{"op": "replace", "path": "/fix/availability/date_ns", "value": 1768953600000000000},
	])
	vs := [later, fx.vuln_in_window]
	patched := fx.patched_preparing
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	_expect(d, "delay")
	d.obligations == {{"type": "recheck_at", "at_ns": 1768003200000000000}}
}

# The exceptions come from vigil.rules.sample_exception_test, handed to the decision
# the way a site bundle would export them (data.site.findings.exception).

test_exception_moves_a_finding_to_the_warnings if {
	exceptions := data.vigil.rules.sample_exception_test.exception
	req := fx.request
	host := fx.host
	vs := [fx.vuln_kev]
	patched := fx.patched_none
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now with data.site.findings.exception as exceptions
	_expect(d, "admit")
	some w in d.warnings
	w.rule == "kev_without_patched_configuration"
	startswith(w.message, "excepted: ")
}

test_exception_without_vulnerability_covers_the_rule if {
	exceptions := data.vigil.rules.sample_exception_test.exception
	req := fx.request
	host := json.patch(fx.host, [{"op": "replace", "path": "/attestation/age_seconds", "value": 999999}])
	vs := []
	patched := fx.patched_none
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now with data.site.findings.exception as exceptions
	_expect(d, "admit")
}

test_reject_when_the_kernel_is_uncovered if {
	req := fx.request
	host := fx.host
	vs := []
	cov := [{"component": 0, "status": "uncovered", "sources": [], "notes": []}]
	patched := fx.patched_none
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.coverage as cov with input.patched_configuration as patched with input.decision_time as now
	_expect(d, "reject")
	{r.rule | some r in d.reasons} == {"component_not_covered"}
	some r in d.reasons
	contains(r.message, "kernel linux_kernel 6.6.30")
}

test_recheck_after_the_interval_when_a_fix_is_out if {
	req := fx.request
	host := fx.host
	out := json.patch(fx.vuln_in_window, [
		{"op": "replace", "path": "/fix/availability/days_from_now", "value": -3},
		{"op": "replace", "path": "/fix/availability/date", "value": "2025-12-29"},
	])
	vs := [out, fx.vuln_in_window]
	patched := fx.patched_preparing
	now := fx.decision_time
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	_expect(d, "delay")
	d.obligations == {{"type": "recheck_at", "at_ns": 1767312600000000000}}
}

# A decision document (input schema version 2) has the request and the host posture's
# counts and facts (input.posture); its vulnerabilities were judged by data.vigil.posture.

_posture(counts, recheck) := {"digest": "sha256:0", "decision_id": null, "counts": counts, "facts": {"delay_recheck": recheck}}

test_host_denies_reject_without_their_reasons if {
	req := fx.request
	host := fx.host
	patched := fx.patched_none
	now := fx.decision_time
	p := _posture({"deny": 2, "patch": 0, "delay": 0, "warn": 5}, null)
	d := decision.result with input.request as req with input.host as host with input.patched_configuration as patched with input.decision_time as now with input.posture as p
	d == {"verdict": "reject", "reasons": set(), "obligations": set(), "warnings": set()}
}

test_host_delays_recheck_at_the_posture_date_or_after_the_interval if {
	req := fx.request
	host := fx.host
	patched := fx.patched_preparing
	now := fx.decision_time
	later := _posture({"deny": 0, "patch": 0, "delay": 1, "warn": 0}, {"earliest_ns": 1768003200000000000, "available_now": false})
	d := decision.result with input.request as req with input.host as host with input.patched_configuration as patched with input.decision_time as now with input.posture as later
	_expect(d, "delay")
	d.obligations == {{"type": "recheck_at", "at_ns": 1768003200000000000}}
	out := _posture({"deny": 0, "patch": 0, "delay": 1, "warn": 0}, {"earliest_ns": 1768003200000000000, "available_now": true})
	e := decision.result with input.request as req with input.host as host with input.patched_configuration as patched with input.decision_time as now with input.posture as out
	e.obligations == {{"type": "recheck_at", "at_ns": 1767312600000000000}}
}

test_request_findings_still_decide_with_a_clean_posture if {
	req := fx.request
	host := json.patch(fx.host, [{"op": "replace", "path": "/attestation/age_seconds", "value": 999999}])
	patched := fx.patched_none
	now := fx.decision_time
	p := _posture({"deny": 0, "patch": 0, "delay": 0, "warn": 0}, null)
	d := decision.result with input.request as req with input.host as host with input.patched_configuration as patched with input.decision_time as now with input.posture as p
	_expect(d, "reject")
	{r.rule | some r in d.reasons} == {"attestation_stale"}
}

# The host findings of a decision document are the posture's alone: vulnerabilities in
# its input (which its schema forbids) are not judged again.
test_a_decision_document_does_not_judge_vulnerabilities if {
	req := fx.request
	host := fx.host
	vs := [fx.vuln_kev, fx.vuln_in_window, fx.vuln_low]
	patched := fx.patched_none
	now := fx.decision_time
	p := _posture({"deny": 0, "patch": 0, "delay": 0, "warn": 0}, null)
	d := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now with input.posture as p
	d == {"verdict": "admit", "reasons": set(), "obligations": set(), "warnings": set()}
	whole := decision.result with input.request as req with input.host as host with input.vulnerabilities as vs with input.patched_configuration as patched with input.decision_time as now
	_expect(whole, "reject")
}
