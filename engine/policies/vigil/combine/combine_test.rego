package vigil.combine_test

import rego.v1

import data.vigil.combine

_kev := {"rule": "kev_without_patched_configuration", "message": "m", "vulnerability": "CVE-2026-0004"}

_other := {"rule": "kev_without_patched_configuration", "message": "n", "vulnerability": "CVE-2026-0005"}

test_no_exception_keeps_every_finding if {
	combine.active({_kev, _other}) == {_kev, _other}
	count(combine.excepted({_kev, _other})) == 0
}

test_an_exception_moves_its_finding if {
	exceptions := data.vigil.rules.sample_exception_test.exception
	active := combine.active({_kev, _other}) with data.site.findings.exception as exceptions
	excepted := combine.excepted({_kev, _other}) with data.site.findings.exception as exceptions
	active == {_other}
	excepted == {object.union(_kev, {"message": "excepted: m"})}
}
