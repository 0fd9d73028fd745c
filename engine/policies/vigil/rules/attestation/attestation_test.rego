package vigil.rules.attestation_test

import rego.v1

import data.vigil.rules.attestation
import data.vigil.testing.fixtures_test as fx

test_affirming_fresh_host_has_no_finding if {
	host := fx.host
	deny := attestation.deny with input.host as host
	count(deny) == 0
}

test_not_affirming_names_each_failed_step if {
	host := json.patch(fx.host, [
		{"op": "replace", "path": "/attestation/status", "value": "contraindicated"},
		{"op": "replace", "path": "/attestation/failures", "value": [
			{"step": "pcr-replay", "reason": "PCR 7 does not match the event log"},
			{"step": "reference-values", "reason": "shim digest not in the image manifest"},
		]},
	])
	deny := attestation.deny with input.host as host
	count(deny) == 2
	some r in deny
	r.rule == "attestation_not_affirming"
	r.failure.step == "pcr-replay"
	contains(r.message, "PCR 7 does not match")
}

test_warning_without_failures_names_the_status if {
	host := json.patch(fx.host, [{"op": "replace", "path": "/attestation/status", "value": "warning"}])
	deny := attestation.deny with input.host as host
	deny == {{"rule": "attestation_not_affirming", "message": "host hv-01 attestation is warning"}}
}

test_missing_attestation_is_rejected if {
	host := json.patch(fx.host, [{"op": "replace", "path": "/attestation/status", "value": "none"}])
	deny := attestation.deny with input.host as host
	deny == {{"rule": "attestation_not_affirming", "message": "host hv-01 attestation is missing (no attestation result)"}}
}

test_stale_attestation_is_rejected if {
	host := json.patch(fx.host, [{"op": "replace", "path": "/attestation/age_seconds", "value": 86401}])
	deny := attestation.deny with input.host as host
	deny == {{"rule": "attestation_stale", "message": "host hv-01 attestation is 86401 s old, more than the 86400 s allowed"}}
}

test_age_at_the_limit_is_fresh if {
	host := json.patch(fx.host, [{"op": "replace", "path": "/attestation/age_seconds", "value": 86400}])
	deny := attestation.deny with input.host as host
	count(deny) == 0
}

test_max_age_comes_from_bundle_data if {
	host := fx.host
	deny := attestation.deny with input.host as host with data.vigil.config.attestation.max_age_seconds as 60
	some r in deny
	r.rule == "attestation_stale"
}

test_unknown_issue_time_is_stale if {
	host := json.patch(fx.host, [{"op": "replace", "path": "/attestation/age_seconds", "value": null}])
	deny := attestation.deny with input.host as host
	some r in deny
	r.rule == "attestation_stale"
	contains(r.message, "no issue time")
}
