# METADATA
# title: How findings combine
# description: |
#   The administrator's findings (data.site.findings) and exceptions, for the decision
#   (data.vigil.decision) and the host posture (data.vigil.posture). Apart from
#   data.vigil.lib, which the site rules import: a package the site rules read must not
#   read them back.
package vigil.combine

import rego.v1

# An administrator's findings, exported by their bundle root as data.site.findings. Every
# package is referenced by its full name: a reference through a variable
# (data.site.rules[name]) makes evaluators evaluate every rule under data.site.rules,
# tests included, which costs more than the rules themselves and can recurse.

default site_deny := set()

site_deny := data.site.findings.deny

default site_patch := set()

site_patch := data.site.findings.patch

default site_delay := set()

site_delay := data.site.findings.delay

default site_warn := set()

site_warn := data.site.findings.warn

default site_obligations := set()

site_obligations := data.site.findings.obligations

default site_exceptions := set()

site_exceptions := data.site.findings.exception

_excepted(f) if {
	some e in site_exceptions
	e.rule == f.rule
	not e.vulnerability
}

_excepted(f) if {
	some e in site_exceptions
	e.rule == f.rule
	e.vulnerability == f.vulnerability
}

# METADATA
# title: The findings no exception covers
active(findings) := findings if {
	count(site_exceptions) == 0
} else := {f | some f in findings; not _excepted(f)}

# METADATA
# title: The findings an exception covers, as warnings
excepted(findings) := {object.union(f, {"message": sprintf("excepted: %s", [f.message])}) |
	count(site_exceptions) > 0
	some f in findings
	_excepted(f)
}
