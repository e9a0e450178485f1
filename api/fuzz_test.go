package api

import (
	"encoding/json"
	"testing"
)

// FuzzHandle: any request line gets a response that encodes, and a
// request that is not ok says why.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{`{"op":"status"}`, `{"op":"balloon","mib":256}`, `{"op":"pause"}`, `{"op":"x"}`, `{`, `{"op":"balloon","mib":1e30}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		resp := handle(line, &fakeVM{})
		if !resp.OK && resp.Error == "" {
			t.Fatalf("%q: failed without an error", line)
		}
		if _, err := json.Marshal(resp); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	})
}
