# METADATA
# title: Vigil host posture
# description: |
#   What a host's facts say, judged once per host posture: the host's attestation
#   result, the vulnerabilities of its components for the day, their coverage and its
#   patched configuration (a host document of input schema version 2). The findings of
#   the rules that read those facts (data.vigil.rules.vulnerabilities and the host
#   findings an administrator's rules export as data.site.findings), exceptions applied,
#   and the facts the decision needs (when a delay can be re-checked). The engine keeps
#   the answer for as long as none of those facts changes and hands the decision of each
#   request (data.vigil.decision) its counts and facts as input.posture.
package vigil.posture

import rego.v1

import data.vigil.combine

_deny := data.vigil.rules.vulnerabilities.deny | data.vigil.combine.site_deny

_patch := data.vigil.rules.vulnerabilities.patch | data.vigil.combine.site_patch

_delay := data.vigil.rules.vulnerabilities.delay | data.vigil.combine.site_delay

_warn := data.vigil.rules.vulnerabilities.warn | data.vigil.combine.site_warn

# The findings an exception moved to the warnings: none without exceptions, and then the
# host's findings are not gathered for it.
_excepted_warnings := set() if {
	count(data.vigil.combine.site_exceptions) == 0
} else := combine.excepted(((_deny | _patch) | _delay))

default _delay_recheck := null

_delay_recheck := data.vigil.rules.vulnerabilities.delay_recheck

# METADATA
# title: Host posture
# description: |
#   The host findings by kind (deny, patch, delay, warn; excepted ones among the
#   warnings), the host obligations per verdict, and the facts: delay_recheck, the
#   earliest expected fix date of the delays and whether a fix is already out (null
#   without delays).
# entrypoint: true
result := {
	"deny": combine.active(_deny),
	"patch": combine.active(_patch),
	"delay": combine.active(_delay),
	"warn": (combine.active(_warn) | _excepted_warnings),
	"obligations": (data.vigil.rules.vulnerabilities.obligations | data.vigil.combine.site_obligations),
	"facts": {"delay_recheck": _delay_recheck},
}
