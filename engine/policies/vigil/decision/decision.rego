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
package vigil.decision

import rego.v1

# Every package is referenced by its full name. A reference through a variable
# (data.site.rules[name]) makes evaluators evaluate every rule under data.site.rules,
# tests included, which costs more than the rules themselves and can recurse.

default _site_deny := set()

_site_deny := data.site.findings.deny

_deny := ((data.vigil.rules.attestation.deny | data.vigil.rules.request.deny) | data.vigil.rules.vulnerabilities.deny) | _site_deny

default _site_patch := set()

_site_patch := data.site.findings.patch

_patch := (data.vigil.rules.request.patch | data.vigil.rules.vulnerabilities.patch) | _site_patch

default _site_delay := set()

_site_delay := data.site.findings.delay

_delay := data.vigil.rules.vulnerabilities.delay | _site_delay

default _site_warn := set()

_site_warn := data.site.findings.warn

_warn := data.vigil.rules.vulnerabilities.warn | _site_warn

default _site_obligations := set()

_site_obligations := data.site.findings.obligations

_obligations := data.vigil.rules.vulnerabilities.obligations | _site_obligations

default _site_exception := set()

_site_exception := data.site.findings.exception

_exceptions := _site_exception

_excepted(f) if {
	some e in _exceptions
	e.rule == f.rule
	not e.vulnerability
}

_excepted(f) if {
	some e in _exceptions
	e.rule == f.rule
	e.vulnerability == f.vulnerability
}

_active(findings) := findings if {
	count(_exceptions) == 0
} else := {f | some f in findings; not _excepted(f)}

_denies := _active(_deny)

_patches := _active(_patch)

_delays := _active(_delay)

_excepted_findings := {object.union(f, {"message": sprintf("excepted: %s", [f.message])}) |
	count(_exceptions) > 0
	some f in ((_deny | _patch) | _delay)
	_excepted(f)
}

verdict := "reject" if {
	count(_denies) > 0
} else := "patch" if {
	count(_patches) > 0
} else := "delay" if {
	count(_delays) > 0
} else := "admit"

_reasons := {"reject": _denies, "patch": _patches, "delay": _delays, "admit": set()}

# METADATA
# title: Placement decision
# description: |
#   The verdict (admit, patch, delay or reject) with its reasons, the obligations the
#   executor must carry out, and the warnings for what was tolerated.
# entrypoint: true
result := {
	"verdict": verdict,
	"reasons": _reasons[verdict],
	"obligations": {o.obligation | some o in _obligations; o.verdict == verdict},
	"warnings": (_active(_warn) | _excepted_findings),
}
