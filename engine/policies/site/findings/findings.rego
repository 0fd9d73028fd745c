# METADATA
# title: Site findings
# description: |
#   What the administrator's rules packages under data.site.rules contribute to the
#   decision: data.vigil.decision reads deny, patch, delay, warn, exception and
#   obligations from this package. Add one line per kind a new package defines.
package site.findings

import rego.v1

deny contains f if some f in data.site.rules.critical_cvss.deny
