# METADATA
# title: Vulnerabilities
# description: |
#   Judge the vulnerabilities that affect the host's components. A vulnerability is
#   relevant when it is KEV-listed, or its highest CVSS score reaches
#   data.vigil.config.relevance.min_cvss, or its EPSS score reaches
#   data.vigil.config.relevance.min_epss. The window is data.vigil.config.window_days.
#   A host whose kernel, hypervisor, firmware or microcode (data.vigil.config.coverage
#   .required_kinds) no loaded source covers is not admitted: no vulnerability there
#   means nothing was known.
package vigil.rules.vulnerabilities

import rego.v1

import data.vigil.lib

_config := data.vigil.config

_window := _config.window_days

_patched := input.patched_configuration

# Each vulnerability is classified once, by its index in input.vulnerabilities; the
# rules below only look the classes up.

# Relevant: KEV-listed, or the highest CVSS or the EPSS score reaches its threshold.
_relevant contains i if {
	some i, v in input.vulnerabilities
	v.kev != null
}

_relevant contains i if {
	some i, v in input.vulnerabilities
	is_number(v.max_cvss)
	v.max_cvss >= _config.relevance.min_cvss
}

_relevant contains i if {
	some i, v in input.vulnerabilities
	v.epss.score >= _config.relevance.min_epss
}

# Relevant, not KEV-listed, and no ready patched configuration: a delay or a warning.
_open contains i if {
	not lib.patched_ready
	some i in _relevant
	input.vulnerabilities[i].kev == null
}

# Open, with a fix for the host's own line available or expected within the window. A
# fix that exists only on another line (fix.line "other") is an upgrade, not a patch:
# its vendor date does not count (an estimate for this line does).
_in_window contains i if {
	some i in _open
	v := input.vulnerabilities[i]
	not _other_line_only(v)
	days := v.fix.availability.days_from_now
	is_number(days)
	days <= _window
}

_other_line_only(v) if {
	v.fix.line == "other"
	v.fix.availability.basis != "estimated"
}

_label(v) := sprintf("%s (CVSS %.1f)", [v.id, v.max_cvss]) if {
	is_number(v.max_cvss)
} else := sprintf("%s (no CVSS score)", [v.id])

# "product version" of each host component, by index.
_component_names := [name | some i; c := input.host.components[i]; name := _name(i, c)]

_name(_, c) := sprintf("%s %s", [c.product, c.version]) if c.product != null

_name(i, c) := sprintf("component #%d", [i]) if c.product == null

_component(v) := name if {
	name := _component_names[v.component]
} else := sprintf("component #%d", [v.component])

# METADATA
# title: KEV-listed vulnerability without a patched configuration
# description: |
#   Reject when a vulnerability is in CISA's Known Exploited Vulnerabilities catalog
#   and no ready, attested patched configuration exists for the host.
# custom:
#   rule: kev_without_patched_configuration
#   verdict: reject
deny contains reason if {
	some v in input.vulnerabilities
	v.kev != null
	not lib.patched_ready
	reason := {
		"rule": "kev_without_patched_configuration",
		"message": sprintf("%s in %s is exploited in the wild (KEV since %s) and no attested patched configuration is ready", [_label(v), _component(v), v.kev.date_added]),
		"vulnerability": v.id,
	}
}

_required_kinds := {k | some k in _config.coverage.required_kinds}

_coverage_words := {
	"uncovered": "no loaded vulnerability source covers it",
	"undetermined": "its version cannot be read in the terms of the sources that cover its product",
}

_notes(c) := sprintf(" (%s)", [concat("; ", c.notes)]) if {
	count(c.notes) > 0
} else := ""

# METADATA
# title: Host component no vulnerability source covers
# description: |
#   Reject when a kernel, hypervisor, firmware or microcode component (the kinds in
#   data.vigil.config.coverage.required_kinds) is uncovered (no loaded source states
#   versions of it) or undetermined (its version cannot be read in those sources'
#   terms): finding no vulnerability there would mean nothing.
# custom:
#   rule: component_not_covered
#   verdict: reject
deny contains reason if {
	some c in input.coverage
	c.status != "covered"
	component := input.host.components[c.component]
	component.kind in _required_kinds
	reason := {
		"rule": "component_not_covered",
		"message": sprintf("%s %s (%s) is %s: %s%s; the host cannot be judged", [component.kind, _component_names[c.component], _identity(component), c.status, _coverage_words[c.status], _notes(c)]),
		"component": c.component,
	}
}

_identity(c) := c.purl if {
	is_string(c.purl)
} else := c.cpe if {
	is_string(c.cpe)
} else := sprintf("%s/%s", [c.vendor, c.product])

# METADATA
# title: Relevant vulnerability, patched configuration ready
# description: |
#   Patch when a relevant vulnerability affects the host and a ready, attested patched
#   configuration exists: place the VM on that image, patching the host first.
# custom:
#   rule: patched_configuration_ready
#   verdict: patch
patch contains reason if {
	lib.patched_ready
	some i in _relevant
	v := input.vulnerabilities[i]
	reason := {
		"rule": "patched_configuration_ready",
		"message": sprintf("%s in %s is fixed by the attested patched configuration %s %s", [_label(v), _component(v), _patched.image.name, _patched.image.version]),
		"vulnerability": v.id,
	}
}

# METADATA
# title: Fix expected within the window
# description: |
#   Delay when a relevant, not KEV-listed vulnerability has a fix available or expected
#   within data.vigil.config.window_days but no patched configuration is ready yet.
# custom:
#   rule: fix_expected_within_window
#   verdict: delay
delay contains reason if {
	some i in _in_window
	v := input.vulnerabilities[i]
	reason := {
		"rule": "fix_expected_within_window",
		"message": sprintf("%s in %s: fix %s %s (%s), within the %d-day window; no patched configuration is ready", [_label(v), _component(v), _fix_word(v), v.fix.availability.date, v.fix.availability.basis, _config.window_days]),
		"vulnerability": v.id,
	}
}

_fix_word(v) := "available since" if {
	v.fix.availability.days_from_now <= 0
} else := "expected on"

# METADATA
# title: Fix date is an estimate
# description: Warn when a delay rests on a predicted (not vendor-stated) fix date.
# custom:
#   rule: fix_date_estimated
#   verdict: warn
warn contains reason if {
	some i in _in_window
	v := input.vulnerabilities[i]
	v.fix.availability.basis == "estimated"
	reason := {
		"rule": "fix_date_estimated",
		"message": sprintf("the fix date %s for %s is estimated (confidence %.2f)", [v.fix.availability.date, v.id, _confidence(v)]),
		"vulnerability": v.id,
	}
}

_confidence(v) := v.fix.availability.confidence if {
	is_number(v.fix.availability.confidence)
} else := 0

# METADATA
# title: No fix within the window
# description: |
#   Warn (and tolerate) when a relevant, not KEV-listed vulnerability has no fix
#   available or expected within the window and no patched configuration is ready.
# custom:
#   rule: no_fix_within_window
#   verdict: warn
warn contains reason if {
	some i in _open
	not i in _in_window
	v := input.vulnerabilities[i]
	reason := {
		"rule": "no_fix_within_window",
		"message": sprintf("%s in %s has no fix expected within %d days (fix status %s%s); tolerated", [_label(v), _component(v), _config.window_days, v.fix.status, _elsewhere(v)]),
		"vulnerability": v.id,
	}
}

_elsewhere(v) := sprintf(", only on another line: %s", [v.fix.closing_version]) if {
	_other_line_only(v)
} else := ""

# METADATA
# title: Vulnerability below the relevance thresholds
# description: Warn (and tolerate) a vulnerability that is neither KEV-listed nor above the CVSS or EPSS thresholds.
# custom:
#   rule: vulnerability_tolerated
#   verdict: warn
warn contains reason if {
	some i, v in input.vulnerabilities
	not i in _relevant
	reason := {
		"rule": "vulnerability_tolerated",
		"message": sprintf("%s in %s is below the relevance thresholds; tolerated", [_label(v), _component(v)]),
		"vulnerability": v.id,
	}
}

# METADATA
# title: Vulnerability could not be judged
# description: Warn when a vulnerability names a host component whose versions cannot be compared.
# custom:
#   rule: vulnerability_undetermined
#   verdict: warn
warn contains reason if {
	some u in input.undetermined
	reason := {
		"rule": "vulnerability_undetermined",
		"message": sprintf("%s names %s but its versions cannot be compared: %s", [u.id, _component(u), u.reason]),
		"vulnerability": u.id,
	}
}

# METADATA
# title: Obligations for patch and delay
# description: |
#   patch: patch the host to the patched configuration's image, then place the VM on it.
#   delay: trigger the patched configuration's preparation when none is being prepared
#   (the re-check time is the decision's: data.vigil.decision, from delay_recheck).
obligations contains {"verdict": "patch", "obligation": o} if {
	count(patch) > 0
	o := {"type": "patch_host", "host": input.host.id, "image": _patched.image}
}

obligations contains {"verdict": "patch", "obligation": o} if {
	count(patch) > 0
	o := {"type": "place_on_image", "image": _patched.image}
}

obligations contains {"verdict": "delay", "obligation": o} if {
	count(delay) > 0
	_patched.state == "none"
	o := {"type": "prepare_patched_configuration", "host": input.host.id, "vulnerabilities": sort([input.vulnerabilities[i].id | some i in _in_window])}
}

# METADATA
# title: When the delays can be re-checked
# description: |
#   Defined when there are delays: the earliest date_ns of a fix still to come
#   (earliest_ns, null when every fix is out) and whether a fix is already available
#   (available_now). The decision re-checks at the earliest of that date and, when a
#   fix is out, the decision time plus recheck_interval_hours; the decision time is not
#   read here, so the host's posture holds for the whole day.
delay_recheck := {"earliest_ns": _earliest_ns, "available_now": _available_now} if {
	count(delay) > 0
}

_future_ns := [v.fix.availability.date_ns |
	some i in _in_window
	v := input.vulnerabilities[i]
	v.fix.availability.days_from_now > 0
]

_earliest_ns := min(_future_ns) if {
	count(_future_ns) > 0
} else := null

default _available_now := false

_available_now if {
	some i in _in_window
	input.vulnerabilities[i].fix.availability.days_from_now <= 0
}
