package main

// The input document, read from its JSON straight into OPA's AST. OPA's own path (the
// server's too) decodes JSON into Go maps and slices, then converts those into AST
// values: two trees built per evaluation, a fifth of the CPU time of a 50-finding
// posture. This reader builds the AST once, with the same values: numbers kept as
// written (ast.Number is the literal, as json.Number is), strings decoded as
// encoding/json decodes them (anything but plain UTF-8 without escapes is handed to it),
// a later duplicate key replacing an earlier one. Malformed JSON is an error, as there.

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

const maxDepth = 10000 // encoding/json's nesting limit

type jsonReader struct {
	b     []byte
	i     int
	depth int
	stack []ast.Value // the members of the arrays and objects being read
}

// stringValue is the string's value. (OPA's own conversion looks short strings up among
// its interned values first; the lookup it exports allocates a term when there is none,
// which costs more than it saves here, and interning changes no value.)
func stringValue(s string) ast.Value {
	return ast.String(s)
}

func parseInput(b []byte) (ast.Value, error) {
	r := &jsonReader{b: b}
	v, err := r.value()
	if err != nil {
		return nil, err
	}
	r.space()
	if r.i != len(r.b) {
		return nil, r.fail("data after the top-level value")
	}
	return v, nil
}

func (r *jsonReader) fail(what string) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", r.i, what)
}

func (r *jsonReader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *jsonReader) literal(word string, v ast.Value) (ast.Value, error) {
	if len(r.b)-r.i < len(word) || string(r.b[r.i:r.i+len(word)]) != word {
		return nil, r.fail("unknown literal")
	}
	r.i += len(word)
	return v, nil
}

func (r *jsonReader) value() (ast.Value, error) {
	r.space()
	if r.i >= len(r.b) {
		return nil, r.fail("unexpected end of input")
	}
	switch c := r.b[r.i]; {
	case c == '{':
		return r.object()
	case c == '[':
		return r.array()
	case c == '"':
		s, err := r.str()
		if err != nil {
			return nil, err
		}
		return stringValue(s), nil
	case c == 't':
		return r.literal("true", ast.Boolean(true))
	case c == 'f':
		return r.literal("false", ast.Boolean(false))
	case c == 'n':
		return r.literal("null", ast.NullValue)
	case c == '-' || (c >= '0' && c <= '9'):
		return r.number()
	default:
		return nil, r.fail(fmt.Sprintf("unexpected character %q", c))
	}
}

func (r *jsonReader) enter() error {
	r.depth++
	if r.depth > maxDepth {
		return r.fail("nested too deeply")
	}
	return nil
}

func (r *jsonReader) object() (ast.Value, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	r.i++                // '{'
	base := len(r.stack) // keys and values, alternating, above base
	r.space()
	if r.i < len(r.b) && r.b[r.i] == '}' {
		r.i++
		r.depth--
		return ast.NewObject(), nil
	}
	for {
		r.space()
		if r.i >= len(r.b) || r.b[r.i] != '"' {
			return nil, r.fail("expected a key")
		}
		key, err := r.str()
		if err != nil {
			return nil, err
		}
		r.space()
		if r.i >= len(r.b) || r.b[r.i] != ':' {
			return nil, r.fail("expected ':'")
		}
		r.i++
		v, err := r.value()
		if err != nil {
			return nil, err
		}
		r.stack = append(r.stack, stringValue(key), v)
		r.space()
		if r.i >= len(r.b) {
			return nil, r.fail("unexpected end of input")
		}
		switch r.b[r.i] {
		case ',':
			r.i++
		case '}':
			r.i++
			r.depth--
			// terms allocated together, as ast.InterfaceToValue allocates them; Insert
			// replaces the value of a key read before
			items := r.stack[base:]
			kvs := util.NewPtrSlice[ast.Term](len(items))
			obj := ast.NewObjectWithCapacity(len(items) / 2)
			for j := 0; j < len(items); j += 2 {
				kvs[j].Value, kvs[j+1].Value = items[j], items[j+1]
				obj.Insert(kvs[j], kvs[j+1])
			}
			clear(items)
			r.stack = r.stack[:base]
			return obj, nil
		default:
			return nil, r.fail("expected ',' or '}'")
		}
	}
}

func (r *jsonReader) array() (ast.Value, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	r.i++ // '['
	base := len(r.stack)
	r.space()
	if r.i < len(r.b) && r.b[r.i] == ']' {
		r.i++
		r.depth--
		return ast.NewArray(), nil
	}
	for {
		v, err := r.value()
		if err != nil {
			return nil, err
		}
		r.stack = append(r.stack, v)
		r.space()
		if r.i >= len(r.b) {
			return nil, r.fail("unexpected end of input")
		}
		switch r.b[r.i] {
		case ',':
			r.i++
		case ']':
			r.i++
			r.depth--
			items := r.stack[base:]
			terms := util.NewPtrSlice[ast.Term](len(items))
			for j, item := range items {
				terms[j].Value = item
			}
			clear(items)
			r.stack = r.stack[:base]
			return ast.NewArray(terms...), nil
		default:
			return nil, r.fail("expected ',' or ']'")
		}
	}
}

// str reads a string at r.i (its opening quote).
func (r *jsonReader) str() (string, error) {
	start := r.i
	plain := true
	r.i++
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			if plain {
				raw := r.b[start+1 : r.i-1]
				if utf8.Valid(raw) {
					return string(raw), nil
				}
			}
			var s string
			if err := json.Unmarshal(r.b[start:r.i], &s); err != nil {
				return "", fmt.Errorf("invalid JSON string at offset %d: %w", start, err)
			}
			return s, nil
		case c == '\\':
			plain = false
			r.i += 2
		case c < 0x20:
			return "", r.fail("control character in a string")
		default:
			r.i++
		}
	}
	return "", r.fail("unterminated string")
}

func (r *jsonReader) digits() int {
	n := 0
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		r.i++
		n++
	}
	return n
}

var errNumber = errors.New("malformed number")

// number reads a JSON number (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?) as written.
func (r *jsonReader) number() (ast.Value, error) {
	start := r.i
	if r.b[r.i] == '-' {
		r.i++
	}
	if r.i < len(r.b) && r.b[r.i] == '0' {
		r.i++
	} else if r.digits() == 0 {
		return nil, fmt.Errorf("invalid JSON at offset %d: %w", start, errNumber)
	}
	if r.i < len(r.b) && r.b[r.i] == '.' {
		r.i++
		if r.digits() == 0 {
			return nil, fmt.Errorf("invalid JSON at offset %d: %w", start, errNumber)
		}
	}
	if r.i < len(r.b) && (r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		r.i++
		if r.i < len(r.b) && (r.b[r.i] == '+' || r.b[r.i] == '-') {
			r.i++
		}
		if r.digits() == 0 {
			return nil, fmt.Errorf("invalid JSON at offset %d: %w", start, errNumber)
		}
	}
	text := string(r.b[start:r.i])
	if interned := ast.InternedIntNumberTermFromString(text); interned != nil {
		return interned.Value, nil
	}
	n, err := ast.NumberChecked(text)
	if err != nil {
		return nil, err
	}
	return n, nil
}
