// Package wipe keeps a session's personal data in memory the kiosk owns,
// so that it can be overwritten when the resident has gone.
//
// Go strings are immutable and may share memory the program does not own
// (constants in read-only memory, runtime tables), so they cannot be
// overwritten in place safely. Instead an Arena takes ownership: Own copies
// every string reachable in a value into one byte buffer the arena
// allocated, and rebinds the fields to those copies; Wipe clears the
// buffer, so every string that still refers to it — in the session, in a
// snapshot a screen kept — reads as NUL bytes from then on.
//
// What an arena cannot reach: copies made before Own (the decoder's own
// strings, TLS and websocket read buffers). They are dropped, unreachable,
// and overwritten as memory is reused; callers clear the byte buffers they
// own (the received frame, the card files, the PDF). docs/KIOSK.md records
// the limit.
package wipe

import (
	"reflect"
	"sync"
	"unsafe"
)

// Arena owns copies of strings so they can be overwritten together. It is
// safe for concurrent use.
type Arena struct {
	mu     sync.Mutex
	chunks [][]byte
}

// Own rebinds every string field reachable from v (a pointer to a struct,
// slice or array; nested structs, slices and arrays are followed, maps and
// pointers are not) to a copy in the arena.
func (a *Arena) Own(v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return
	}
	n := 0
	walk(rv.Elem(), func(f reflect.Value) { n += f.Len() })
	if n == 0 {
		return
	}
	buf := make([]byte, n)
	off := 0
	walk(rv.Elem(), func(f reflect.Value) {
		s := f.String()
		if len(s) == 0 {
			return
		}
		copy(buf[off:], s)
		f.SetString(unsafe.String(&buf[off], len(s)))
		off += len(s)
	})
	a.mu.Lock()
	a.chunks = append(a.chunks, buf)
	a.mu.Unlock()
}

// Wipe overwrites everything the arena owns and forgets it.
func (a *Arena) Wipe() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.chunks {
		clear(c)
	}
	a.chunks = nil
}

// Size returns how many bytes the arena holds.
func (a *Arena) Size() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.chunks {
		n += len(c)
	}
	return n
}

// walk calls f for every settable string reachable from v.
func walk(v reflect.Value, f func(reflect.Value)) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			f(v)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			walk(v.Field(i), f)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // byte slices are cleared by their owners
		}
		for i := 0; i < v.Len(); i++ {
			walk(v.Index(i), f)
		}
	}
}
