package vigil.lib_test

import rego.v1

import data.vigil.lib
import data.vigil.testing.fixtures_test as fx

test_patched_configuration_ready_and_affirming if {
	patched := fx.patched_ready
	lib.patched_ready with input.patched_configuration as patched
}

test_patched_configuration_not_ready_or_not_affirming if {
	preparing := fx.patched_preparing
	not lib.patched_ready with input.patched_configuration as preparing
	warning := json.patch(fx.patched_ready, [{"op": "replace", "path": "/attestation_status", "value": "warning"}])
	not lib.patched_ready with input.patched_configuration as warning
}
