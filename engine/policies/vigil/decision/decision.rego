# METADATA
# title: Vigil placement decision
# description: |
#   Combines the findings of the default rules packages (data.vigil.rules.attestation,
#   .request and .vulnerabilities) and of an administrator's own rules, which their
#   bundle root exports as data.site.findings (deny, patch, delay, warn, exception,
#   obligations), into one verdict:
#   reject if any deny, else patch if any patch, else delay if any delay, else admit.
#   Warnings list what was tolerated. A finding named by an exception is moved to the
#   warnings.
#
#   A decision document of input schema version 2 carries the host's facts judged once
#   per host posture (data.vigil.posture.result) as input.posture: the number of host
#   findings of each kind and the posture's facts. Its own findings are those of the
#   request; the engine adds the host findings of the kind the verdict names to the
#   reasons, the host warnings to the warnings and the host obligations of the verdict
#   to the obligations. A version 1 document carries every fact itself and is judged
#   here whole (input.posture is absent).
package vigil.decision

import rego.v1

import data.vigil.combine

_host_count(kind) := n if {
	n := input.posture.counts[kind]
} else := 0

# The findings of data.vigil.rules.vulnerabilities: a decision document (version 2) has
# none of the facts they read (its schema forbids vulnerabilities, coverage, undetermined
# and host components; the posture judged them), so they are not evaluated for it.
_host_deny := set() if {
	input.posture
} else := data.vigil.rules.vulnerabilities.deny

_host_patch := set() if {
	input.posture
} else := data.vigil.rules.vulnerabilities.patch

_host_delay := set() if {
	input.posture
} else := data.vigil.rules.vulnerabilities.delay

_host_warn := set() if {
	input.posture
} else := data.vigil.rules.vulnerabilities.warn

_host_obligations := set() if {
	input.posture
} else := data.vigil.rules.vulnerabilities.obligations

_deny := ((data.vigil.rules.attestation.deny | data.vigil.rules.request.deny) | _host_deny) | data.vigil.combine.site_deny

_patch := (data.vigil.rules.request.patch | _host_patch) | data.vigil.combine.site_patch

_delay := _host_delay | data.vigil.combine.site_delay

_warn := _host_warn | data.vigil.combine.site_warn

_obligations := (_host_obligations | data.vigil.combine.site_obligations) | _recheck

_denies := combine.active(_deny)

_patches := combine.active(_patch)

_delays := combine.active(_delay)

verdict := "reject" if {
	count(_denies) + _host_count("deny") > 0
} else := "patch" if {
	count(_patches) + _host_count("patch") > 0
} else := "delay" if {
	count(_delays) + _host_count("delay") > 0
} else := "admit"

# The reasons of the verdict: only the findings of its own kind are combined (an object of
# every kind's findings had each evaluated for every verdict).
_verdict_reasons := _denies if {
	verdict == "reject"
} else := _patches if {
	verdict == "patch"
} else := _delays if {
	verdict == "delay"
} else := set()

# The findings an exception moved to the warnings: none without exceptions, and then the
# findings are not gathered for it.
_excepted_warnings := set() if {
	count(data.vigil.combine.site_exceptions) == 0
} else := combine.excepted(((_deny | _patch) | _delay))

# When the delays can be re-checked: the posture's facts (version 2), or the
# vulnerabilities package's own (version 1). The decision time is the request's.
_delay_recheck := input.posture.facts.delay_recheck if {
	input.posture
} else := data.vigil.rules.vulnerabilities.delay_recheck

_recheck_times contains t if {
	t := _delay_recheck.earliest_ns
	is_number(t)
}

_recheck_times contains t if {
	_delay_recheck.available_now == true
	t := input.decision_time.ns + ((data.vigil.config.recheck_interval_hours * 3600) * 1000000000)
}

# METADATA
# title: Re-check a delay
# description: |
#   delay: re-check at the earliest expected fix date (or after recheck_interval_hours
#   when a fix is already available).
_recheck contains {"verdict": "delay", "obligation": {"type": "recheck_at", "at_ns": min(_recheck_times)}} if {
	verdict == "delay" # the result keeps the obligations of its verdict only
	count(_recheck_times) > 0
}

# METADATA
# title: Placement decision
# description: |
#   The verdict (admit, patch, delay or reject) with its reasons, the obligations the
#   executor must carry out, and the warnings for what was tolerated.
# entrypoint: true
result := {
	"verdict": verdict,
	"reasons": _verdict_reasons,
	"obligations": {o.obligation | some o in _obligations; o.verdict == verdict},
	"warnings": (combine.active(_warn) | _excepted_warnings),
}
