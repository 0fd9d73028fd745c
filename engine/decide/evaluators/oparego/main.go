// Package main is Vigil's bridge to OPA's own Rego engine: a C shared library
// (go build -buildmode=c-shared) that prepares a query over a set of modules and data
// once, then evaluates it per input, cancelled at the decision timeout. Everything
// crosses as JSON; every returned string is freed with vigil_free.
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
	"unsafe"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
)

// The collector's settings when the environment names none (GOGC, GOMEMLIMIT are
// honoured as in any Go program). The live heap is small (the prepared queries, a few
// MB) while one evaluation allocates several times that, so with Go's default of 100
// the collector ran every few evaluations (about 900 cycles in one decide_bench run)
// and cost half of OPA's time at 500 findings, plus the p99 tail. 800 lets the heap grow
// to nine times the live data before a cycle; the soft limit bounds what a large
// evaluation may leave uncollected (the collector runs earlier near it): the default
// bench process peaked at 357 MB resident with 256 MiB, 691 MB with 1 GiB.
const (
	defaultGCPercent   = 800
	defaultMemoryLimit = 512 << 20
)

func init() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

// vigil_gc_settings reports the collector's settings in force, as JSON
// {"gc_percent": n, "memory_limit": bytes}.
//
//export vigil_gc_settings
func vigil_gc_settings() *C.char {
	samples := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(samples)
	out, _ := json.Marshal(map[string]uint64{
		"gc_percent":   samples[0].Value.Uint64(),
		"memory_limit": samples[1].Value.Uint64(),
	})
	return C.CString(string(out))
}

type prepared struct {
	query rego.PreparedEvalQuery
}

var (
	mu      sync.Mutex
	queries = map[int64]*prepared{}
	next    int64
)

type prepareRequest struct {
	Modules map[string]string `json:"modules"`
	Data    map[string]any    `json:"data"`
	Query   string            `json:"query"`
}

type reply struct {
	Handle  int64  `json:"handle,omitempty"`
	Defined bool   `json:"defined"`
	Value   any    `json:"value,omitempty"`
	Error   string `json:"error,omitempty"`
	Timeout bool   `json:"timeout,omitempty"`
	EvalNs  int64  `json:"eval_ns,omitempty"`
}

func answer(r reply) *C.char {
	out, err := json.Marshal(r)
	if err != nil {
		out, _ = json.Marshal(reply{Error: "encoding the answer: " + err.Error()})
	}
	return C.CString(string(out))
}

//export vigil_prepare
func vigil_prepare(request *C.char) *C.char {
	var req prepareRequest
	if err := util.UnmarshalJSON([]byte(C.GoString(request)), &req); err != nil {
		return answer(reply{Error: "prepare request: " + err.Error()})
	}
	opts := []func(*rego.Rego){
		rego.Query(req.Query),
		rego.Store(inmem.NewFromObject(req.Data)),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
	}
	for name, source := range req.Modules {
		opts = append(opts, rego.Module(name, source))
	}
	query, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		return answer(reply{Error: err.Error()})
	}
	mu.Lock()
	next++
	handle := next
	queries[handle] = &prepared{query: query}
	mu.Unlock()
	return answer(reply{Handle: handle})
}

//export vigil_eval
func vigil_eval(handle C.longlong, input *C.char, timeoutMs C.longlong) *C.char {
	mu.Lock()
	p := queries[int64(handle)]
	mu.Unlock()
	if p == nil {
		return answer(reply{Error: "no prepared query with this handle"})
	}
	var doc any
	// numbers kept as written (json.Number), as the OPA server reads its input: 5.0 stays
	// a float for sprintf("%.1f"), where a float64 decode would turn it into an integer
	if err := util.UnmarshalJSON([]byte(C.GoString(input)), &doc); err != nil {
		return answer(reply{Error: "input: " + err.Error()})
	}
	ctx := context.Background()
	if timeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeoutMs)*time.Millisecond)
		defer cancel()
	}
	started := time.Now()
	rs, err := p.query.Eval(ctx, rego.EvalInput(doc))
	elapsed := time.Since(started).Nanoseconds()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return answer(reply{Error: err.Error(), Timeout: true, EvalNs: elapsed})
		}
		return answer(reply{Error: err.Error(), EvalNs: elapsed})
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return answer(reply{Defined: false, EvalNs: elapsed})
	}
	return answer(reply{Defined: true, Value: rs[0].Expressions[0].Value, EvalNs: elapsed})
}

//export vigil_release
func vigil_release(handle C.longlong) {
	mu.Lock()
	delete(queries, int64(handle))
	mu.Unlock()
}

//export vigil_free
func vigil_free(p *C.char) {
	C.free(unsafe.Pointer(p))
}

func main() {}
