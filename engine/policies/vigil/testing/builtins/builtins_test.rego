# METADATA
# title: Built-ins the policies use, pinned
# description: |
#   Every built-in the default policies call, with the exact result they rely on, so
#   that an evaluator (regorus, rego-cpp or OPA) that differs fails here first. Policies
#   avoid what differs: %v of floats, %f of integers (the engine sends scores as
#   decimals), time.parse_rfc3339_ns, net.*, object.union on nested objects, object.keys.
package vigil.testing.builtins_test

import rego.v1

test_sprintf_formats if {
	sprintf("%s|%d|%.1f|%.2f", ["a", 42, 9.8, 0.62]) == "a|42|9.8|0.62"
	sprintf("%.1f", [7.0]) == "7.0"
	sprintf("%.2f", [1.0]) == "1.00"
	sprintf("%d", [86401]) == "86401"
}

test_numbers_and_sets if {
	is_number(9.8)
	not is_number(null)
	min({1768953600000000000, 1768003200000000000}) == 1768003200000000000
	count({1, 2}) == 2
	sort(["b", "a"]) == ["a", "b"]
	9.8 >= 9
	not 8.95 >= 9.0
}

test_nanosecond_arithmetic if {
	1767226200000000000 + ((24 * 3600) * 1000000000) == 1767312600000000000
}

test_strings if {
	contains("excepted: x", "excepted")
	startswith("excepted: x", "excepted: ")
}

test_arrays_and_patches if {
	array.concat(["a"], ["b"]) == ["a", "b"]
	json.patch({"a": {"b": 1}}, [{"op": "replace", "path": "/a/b", "value": 2}]) == {"a": {"b": 2}}
	object.union({"m": "x", "r": 1}, {"m": "y"}) == {"m": "y", "r": 1}
}
