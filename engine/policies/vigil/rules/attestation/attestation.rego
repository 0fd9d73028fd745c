# METADATA
# title: Attestation
# description: |
#   The host must present an affirming attestation result that is not older than
#   data.vigil.config.attestation.max_age_seconds.
package vigil.rules.attestation

import rego.v1

_attestation := input.host.attestation

_max_age := data.vigil.config.attestation.max_age_seconds

# METADATA
# title: Attestation is not affirming
# description: |
#   Reject a host whose attestation result is warning, contraindicated or missing.
#   One reason per failed verification step, or one naming the status when the
#   verifier reported no failed step.
# custom:
#   rule: attestation_not_affirming
#   verdict: reject
deny contains reason if {
	_attestation.status != "affirming"
	some failure in _attestation.failures
	reason := {
		"rule": "attestation_not_affirming",
		"message": sprintf("host %s attestation is %s: step %s failed: %s", [input.host.id, _attestation.status, failure.step, failure.reason]),
		"failure": failure,
	}
}

# METADATA
# title: Attestation is not affirming
# custom:
#   rule: attestation_not_affirming
#   verdict: reject
deny contains reason if {
	_attestation.status != "affirming"
	count(_attestation.failures) == 0
	reason := {
		"rule": "attestation_not_affirming",
		"message": sprintf("host %s attestation is %s", [input.host.id, _status_text]),
	}
}

_status_text := "missing (no attestation result)" if {
	_attestation.status == "none"
} else := _attestation.status

# METADATA
# title: Attestation is stale
# description: |
#   Reject a host whose affirming attestation result is older than
#   data.vigil.config.attestation.max_age_seconds, or carries no issue time.
# custom:
#   rule: attestation_stale
#   verdict: reject
deny contains reason if {
	_attestation.status == "affirming"
	is_number(_attestation.age_seconds)
	_attestation.age_seconds > _max_age
	reason := {
		"rule": "attestation_stale",
		"message": sprintf("host %s attestation is %d s old, more than the %d s allowed", [input.host.id, _attestation.age_seconds, _max_age]),
	}
}

# METADATA
# title: Attestation is stale
# custom:
#   rule: attestation_stale
#   verdict: reject
deny contains reason if {
	_attestation.status == "affirming"
	_attestation.age_seconds == null
	reason := {
		"rule": "attestation_stale",
		"message": sprintf("host %s attestation has no issue time, so its age is unknown", [input.host.id]),
	}
}
