# METADATA
# title: Tenant request
# description: |
#   A tenant may require a minimum host image version (requested_patch_level) or an
#   exact host image (requested_image). The engine compares versions with the image's
#   version scheme and hands the answer over in input.request.patch_level_met.
package vigil.rules.request

import rego.v1

import data.vigil.lib

_request := input.request

_patched := input.patched_configuration

_host_image := input.host.attestation.image

_level_met_by_host if _request.patch_level_met.host == true

_level_met_by_patched if {
	lib.patched_ready
	_request.patch_level_met.patched_configuration == true
}

# METADATA
# title: Requested patch level cannot be met
# description: |
#   Reject when the tenant requires a patch level that neither the host's attested
#   image nor a ready, attested patched configuration reaches (or when the versions
#   cannot be compared).
# custom:
#   rule: requested_patch_level_unmet
#   verdict: reject
deny contains reason if {
	_request.requested_patch_level != null
	not _level_met_by_host
	not _level_met_by_patched
	reason := {
		"rule": "requested_patch_level_unmet",
		"message": sprintf("tenant %s requires patch level %s; host %s cannot meet it", [_request.tenant, _request.requested_patch_level, input.host.id]),
	}
}

# METADATA
# title: Requested patch level needs the patched configuration
# description: |
#   Patch when the host's image is below the requested patch level but its ready,
#   attested patched configuration reaches it.
# custom:
#   rule: requested_patch_level_needs_patched_configuration
#   verdict: patch
patch contains reason if {
	_request.requested_patch_level != null
	not _level_met_by_host
	_level_met_by_patched
	reason := {
		"rule": "requested_patch_level_needs_patched_configuration",
		"message": sprintf("tenant %s requires patch level %s; host %s reaches it on image %s %s", [_request.tenant, _request.requested_patch_level, input.host.id, _patched.image.name, _patched.image.version]),
	}
}

_same_image(a, b) if {
	a.name == b.name
	a.version == b.version
}

_host_has_requested_image if _same_image(_host_image, _request.requested_image)

_patched_has_requested_image if {
	lib.patched_ready
	_same_image(_patched.image, _request.requested_image)
}

# METADATA
# title: Requested image cannot be met
# description: |
#   Reject when the tenant requires an exact image that neither the host runs nor its
#   ready, attested patched configuration provides.
# custom:
#   rule: requested_image_unmet
#   verdict: reject
deny contains reason if {
	_request.requested_image != null
	not _host_has_requested_image
	not _patched_has_requested_image
	reason := {
		"rule": "requested_image_unmet",
		"message": sprintf("tenant %s requires image %s %s; host %s cannot provide it", [_request.tenant, _request.requested_image.name, _request.requested_image.version, input.host.id]),
	}
}

# METADATA
# title: Requested image needs the patched configuration
# description: Patch when only the ready, attested patched configuration runs the requested image.
# custom:
#   rule: requested_image_needs_patched_configuration
#   verdict: patch
patch contains reason if {
	_request.requested_image != null
	not _host_has_requested_image
	_patched_has_requested_image
	reason := {
		"rule": "requested_image_needs_patched_configuration",
		"message": sprintf("tenant %s requires image %s %s; host %s provides it once patched", [_request.tenant, _request.requested_image.name, _request.requested_image.version, input.host.id]),
	}
}
