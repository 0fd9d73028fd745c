# METADATA
# title: Sample exceptions (test only)
# description: |
#   conftest-style exceptions that vigil.decision_test hands to the decision as
#   data.site.findings.exception. An exception names a rule and, optionally, one
#   vulnerability; the findings it covers move from the reasons to the warnings.
package vigil.rules.sample_exception_test

import rego.v1

exception contains {"rule": "kev_without_patched_configuration", "vulnerability": "CVE-2026-0004"}

exception contains {"rule": "attestation_stale"}
