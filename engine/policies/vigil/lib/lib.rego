# METADATA
# title: Shared definitions
# description: |
#   What more than one rules package asks about the input, defined once. The default
#   rules and an administrator's rules (data.site.rules) import it as data.vigil.lib.
package vigil.lib

import rego.v1

# METADATA
# title: The patched configuration is ready
# description: |
#   The host's patched configuration (input.patched_configuration) is ready, attested,
#   and its attestation result is affirming: only then can the host be patched to it.
patched_ready if {
	input.patched_configuration.state == "ready"
	input.patched_configuration.attested == true
	input.patched_configuration.attestation_status == "affirming"
}
