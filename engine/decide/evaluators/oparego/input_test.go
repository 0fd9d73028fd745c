package main

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// the reader gives the value OPA's own decode-then-convert path gives
func TestParseInputAgreesWithOPA(t *testing.T) {
	docs := []string{
		`{}`, `[]`, `null`, `true`, `-0`, `5.0`, `1e3`, `-12.5E-2`, `"x"`,
		` {"a": [1, 2.50, {"b": null, "c": false}], "d": "é\u00e9\n\"\\/ \ud83d\ude00", "e": {}} `,
		`{"k": 1, "k": 2}`, `[123456789012345678901234567890, 0.1, -7]`,
	}
	for _, doc := range docs {
		got, err := parseInput([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		var x any
		if err := util.UnmarshalJSON([]byte(doc), &x); err != nil {
			t.Fatal(err)
		}
		want, err := ast.InterfaceToValue(x)
		if err != nil {
			t.Fatal(err)
		}
		if got.Compare(want) != 0 || got.String() != want.String() {
			t.Errorf("%s: got %v, want %v", doc, got, want)
		}
	}
}

func TestParseInputRefusesMalformedJSON(t *testing.T) {
	for _, doc := range []string{
		``, `{`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `-`, `1e`, `tru`,
		`"a`, "\"a\x01\"", `{"a":1} x`, `[1 2]`, `{1: 2}`, `"\x"`, `+1`,
	} {
		if _, err := parseInput([]byte(doc)); err == nil {
			t.Errorf("%q: accepted", doc)
		}
	}
}
