# METADATA
# title: Site rule example - no critical unpatched vulnerabilities
# description: |
#   An administrator's own rule, added without touching the defaults: it lives in its
#   own bundle root (site), is exported by data.site.findings, and the default
#   decision (data.vigil.decision) picks its deny findings up from there.
package site.rules.critical_cvss

import rego.v1

import data.vigil.lib

_min := data.site.config.critical_cvss.min_cvss

# METADATA
# title: Critical vulnerability without a patched configuration
# description: |
#   Reject any host with a vulnerability of CVSS >= data.site.config.critical_cvss.min_cvss
#   (9.0) while no ready, attested patched configuration exists.
# custom:
#   rule: critical_cvss_unpatched
#   verdict: reject
deny contains reason if {
	some v in input.vulnerabilities
	is_number(v.max_cvss)
	v.max_cvss >= _min
	not lib.patched_ready
	reason := {
		"rule": "critical_cvss_unpatched",
		"message": sprintf("%s has CVSS %.1f >= %.1f and the host has no attested patched configuration (site policy)", [v.id, v.max_cvss, _min]),
		"vulnerability": v.id,
	}
}
