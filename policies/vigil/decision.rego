# METADATA
# title: Vigil placement decision
# description: |
#   Combines the findings of the rules packages listed in
#   data.vigil.config.rule_packages (under data.vigil.rules) and in
#   data.site.config.rule_packages (under data.site.rules: an administrator's own
#   rules, in their own bundle root) into one verdict:
#   reject if any deny, else patch if any patch, else delay if any delay, else admit.
#   Warnings list what was tolerated. A finding named by an exception is moved to the
#   warnings.
package vigil.decision

import rego.v1

default _site_packages := []

_site_packages := data.site.config.rule_packages

_deny := {f | some name in data.vigil.config.rule_packages; some f in data.vigil.rules[name].deny} | {f | some name in _site_packages; some f in data.site.rules[name].deny}

_patch := {f | some name in data.vigil.config.rule_packages; some f in data.vigil.rules[name].patch} | {f | some name in _site_packages; some f in data.site.rules[name].patch}

_delay := {f | some name in data.vigil.config.rule_packages; some f in data.vigil.rules[name].delay} | {f | some name in _site_packages; some f in data.site.rules[name].delay}

_warn := {f | some name in data.vigil.config.rule_packages; some f in data.vigil.rules[name].warn} | {f | some name in _site_packages; some f in data.site.rules[name].warn}

_exceptions := {e | some name in data.vigil.config.rule_packages; some e in data.vigil.rules[name].exception} | {e | some name in _site_packages; some e in data.site.rules[name].exception}

_obligations := {o | some name in data.vigil.config.rule_packages; some o in data.vigil.rules[name].obligations} | {o | some name in _site_packages; some o in data.site.rules[name].obligations}

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

_active(findings) := {f | some f in findings; not _excepted(f)}

_denies := _active(_deny)

_patches := _active(_patch)

_delays := _active(_delay)

_excepted_findings := {object.union(f, {"message": sprintf("excepted: %s", [f.message])}) |
	some f in (_deny | _patch) | _delay
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
	"warnings": _active(_warn) | _excepted_findings,
}
