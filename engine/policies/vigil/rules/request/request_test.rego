package vigil.rules.request_test

import rego.v1

import data.vigil.rules.request
import data.vigil.testing.fixtures_test as fx

test_no_requirement_no_finding if {
	req := fx.request
	host := fx.host
	patched := fx.patched_none
	deny := request.deny with input.request as req with input.host as host with input.patched_configuration as patched
	count(deny) == 0
}

test_patch_level_met_by_host if {
	req := json.patch(fx.request, [
		{"op": "replace", "path": "/requested_patch_level", "value": "1.2.0"},
		{"op": "replace", "path": "/patch_level_met", "value": {"host": true, "patched_configuration": null}},
	])
	host := fx.host
	patched := fx.patched_none
	deny := request.deny with input.request as req with input.host as host with input.patched_configuration as patched
	patch := request.patch with input.request as req with input.host as host with input.patched_configuration as patched
	count(deny) == 0
	count(patch) == 0
}

test_patch_level_unmet_is_rejected if {
	req := json.patch(fx.request, [
		{"op": "replace", "path": "/requested_patch_level", "value": "1.3.0"},
		{"op": "replace", "path": "/patch_level_met", "value": {"host": false, "patched_configuration": null}},
	])
	host := fx.host
	patched := fx.patched_none
	deny := request.deny with input.request as req with input.host as host with input.patched_configuration as patched
	deny == {{"rule": "requested_patch_level_unmet", "message": "tenant acme requires patch level 1.3.0; host hv-01 cannot meet it"}}
}

test_patch_level_not_comparable_is_rejected if {
	req := json.patch(fx.request, [
		{"op": "replace", "path": "/requested_patch_level", "value": "banana"},
		{"op": "replace", "path": "/patch_level_met", "value": {"host": null, "patched_configuration": null}},
	])
	host := fx.host
	patched := fx.patched_ready
	deny := request.deny with input.request as req with input.host as host with input.patched_configuration as patched
	some r in deny
	r.rule == "requested_patch_level_unmet"
}

test_patch_level_met_by_patched_configuration_is_patch if {
	req := json.patch(fx.request, [
		{"op": "replace", "path": "/requested_patch_level", "value": "1.3.0"},
		{"op": "replace", "path": "/patch_level_met", "value": {"host": false, "patched_configuration": true}},
	])
	host := fx.host
	patched := fx.patched_ready
	deny := request.deny with input.request as req with input.host as host with input.patched_configuration as patched
	patch := request.patch with input.request as req with input.host as host with input.patched_configuration as patched
	count(deny) == 0
	some r in patch
	r.rule == "requested_patch_level_needs_patched_configuration"
}

test_patched_configuration_not_attested_does_not_count if {
	req := json.patch(fx.request, [
		{"op": "replace", "path": "/requested_patch_level", "value": "1.3.0"},
		{"op": "replace", "path": "/patch_level_met", "value": {"host": false, "patched_configuration": true}},
	])
	host := fx.host
	patched := json.patch(fx.patched_ready, [{"op": "replace", "path": "/attested", "value": false}])
	deny := request.deny with input.request as req with input.host as host with input.patched_configuration as patched
	some r in deny
	r.rule == "requested_patch_level_unmet"
}

test_requested_image_on_host if {
	req := json.patch(fx.request, [{"op": "replace", "path": "/requested_image", "value": {"name": "hv-base", "version": "1.2.0"}}])
	host := fx.host
	patched := fx.patched_none
	deny := request.deny with input.request as req with input.host as host with input.patched_configuration as patched
	count(deny) == 0
}

test_requested_image_unmet_is_rejected if {
	req := json.patch(fx.request, [{"op": "replace", "path": "/requested_image", "value": {"name": "hv-base", "version": "2.0.0"}}])
	host := fx.host
	patched := fx.patched_ready
	deny := request.deny with input.request as req with input.host as host with input.patched_configuration as patched
	deny == {{"rule": "requested_image_unmet", "message": "tenant acme requires image hv-base 2.0.0; host hv-01 cannot provide it"}}
}

test_requested_image_from_patched_configuration_is_patch if {
	req := json.patch(fx.request, [{"op": "replace", "path": "/requested_image", "value": {"name": "hv-base", "version": "1.3.0"}}])
	host := fx.host
	patched := fx.patched_ready
	deny := request.deny with input.request as req with input.host as host with input.patched_configuration as patched
	patch := request.patch with input.request as req with input.host as host with input.patched_configuration as patched
	count(deny) == 0
	patch == {{"rule": "requested_image_needs_patched_configuration", "message": "tenant acme requires image hv-base 1.3.0; host hv-01 provides it once patched"}}
}
