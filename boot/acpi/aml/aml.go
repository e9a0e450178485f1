// Package aml encodes ACPI Machine Language (ACPI 6.5, chapter 20) for the
// DSDT: names, scopes, devices, methods, packages, integers, strings,
// buffers and resource templates (resource.go). It only encodes; nothing is
// parsed. Objects are plain values; Encode checks every name, count and
// length and returns an error instead of emitting an invalid encoding.
package aml

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid reports an object that has no valid AML encoding.
var ErrInvalid = errors.New("aml: invalid object")

// AML opcodes and prefixes (ACPI 6.5, 20.3).
const (
	zeroOp          = 0x00
	oneOp           = 0x01
	nameOp          = 0x08
	bytePrefix      = 0x0a
	wordPrefix      = 0x0b
	dwordPrefix     = 0x0c
	stringPrefix    = 0x0d
	qwordPrefix     = 0x0e
	scopeOp         = 0x10
	bufferOp        = 0x11
	packageOp       = 0x12
	methodOp        = 0x14
	dualNamePrefix  = 0x2e
	multiNamePrefix = 0x2f
	extOpPrefix     = 0x5b
	deviceOp        = 0x82 // after extOpPrefix
	rootChar        = '\\'
	parentPrefix    = '^'
	returnOp        = 0xa4

	// MaxPkgLength is the largest value a PkgLength can hold (28 bits);
	// it counts its own bytes.
	MaxPkgLength = 1<<28 - 1
)

// Object is an encodable piece of AML: a term or a data object.
type Object interface {
	appendAML(b []byte) ([]byte, error)
}

// Encode returns the AML of objs, one after the other (a TermList).
func Encode(objs ...Object) ([]byte, error) {
	return appendTerms(nil, objs)
}

func appendTerms(b []byte, objs []Object) ([]byte, error) {
	var err error
	for _, o := range objs {
		if o == nil {
			return nil, fmt.Errorf("%w: nil object", ErrInvalid)
		}
		if b, err = o.appendAML(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// pkgLength encodes the PkgLength of a body of n bytes; the value encoded
// includes the PkgLength bytes themselves (20.2.4): one byte up to 63,
// otherwise a lead byte with the count of following bytes in bits 6..7 and
// the low nibble in bits 0..3, then the rest little-endian.
func pkgLength(n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: negative length %d", ErrInvalid, n)
	}
	if n+1 <= 0x3f {
		return []byte{byte(n + 1)}, nil
	}
	for extra := 1; extra <= 3; extra++ {
		total := n + 1 + extra
		if total < 1<<(4+8*extra) {
			b := make([]byte, 1+extra)
			b[0] = byte(extra<<6) | byte(total&0xf)
			for i := 1; i <= extra; i++ {
				b[i] = byte(total >> (4 + 8*(i-1)))
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: length %d exceeds the PkgLength maximum %d", ErrInvalid, n, MaxPkgLength)
}

// appendPkg appends PkgLength(body) and body.
func appendPkg(b, body []byte) ([]byte, error) {
	pl, err := pkgLength(len(body))
	if err != nil {
		return nil, err
	}
	return append(append(b, pl...), body...), nil
}

// nameSeg validates one NameSeg, padding it with '_' to four characters as
// ASL does ("_S5" is "_S5_").
func nameSeg(s string) ([]byte, error) {
	if len(s) == 0 || len(s) > 4 {
		return nil, fmt.Errorf("%w: name segment %q is not 1..4 characters", ErrInvalid, s)
	}
	seg := []byte(s + strings.Repeat("_", 4-len(s)))
	for i, c := range seg {
		ok := c == '_' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return nil, fmt.Errorf("%w: name segment %q: character %q", ErrInvalid, s, c)
		}
	}
	return seg, nil
}

// appendNameString encodes a NameString (20.2.2): an optional root '\' or
// parent '^' prefixes, then dot-separated segments.
func appendNameString(b []byte, path string) ([]byte, error) {
	rest := path
	if strings.HasPrefix(rest, `\`) {
		b = append(b, rootChar)
		rest = rest[1:]
	} else {
		for strings.HasPrefix(rest, "^") {
			b = append(b, parentPrefix)
			rest = rest[1:]
		}
	}
	if rest == "" {
		if path == "" {
			return nil, fmt.Errorf("%w: empty name", ErrInvalid)
		}
		return append(b, zeroOp), nil // NullName
	}
	segs := strings.Split(rest, ".")
	switch {
	case len(segs) == 2:
		b = append(b, dualNamePrefix)
	case len(segs) > 255:
		return nil, fmt.Errorf("%w: name %q has %d segments", ErrInvalid, path, len(segs))
	case len(segs) > 2:
		b = append(b, multiNamePrefix, byte(len(segs)))
	}
	for _, s := range segs {
		seg, err := nameSeg(s)
		if err != nil {
			return nil, fmt.Errorf("%w (in %q)", err, path)
		}
		b = append(b, seg...)
	}
	return b, nil
}

// Integer is an integer constant, encoded in the shortest form: ZeroOp,
// OneOp, or a Byte/Word/DWord/QWord prefix.
type Integer uint64

func (v Integer) appendAML(b []byte) ([]byte, error) {
	switch {
	case v == 0:
		return append(b, zeroOp), nil
	case v == 1:
		return append(b, oneOp), nil
	case v <= 0xff:
		return append(b, bytePrefix, byte(v)), nil
	case v <= 0xffff:
		return append(b, wordPrefix, byte(v), byte(v>>8)), nil
	case v <= 0xffff_ffff:
		return append(b, dwordPrefix, byte(v), byte(v>>8), byte(v>>16), byte(v>>24)), nil
	}
	b = append(b, qwordPrefix)
	for i := range 8 {
		b = append(b, byte(v>>(8*i)))
	}
	return b, nil
}

// String is an ASCII string constant (characters 0x01..0x7F).
type String string

func (s String) appendAML(b []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7f {
			return nil, fmt.Errorf("%w: string %q: byte %#x", ErrInvalid, string(s), s[i])
		}
	}
	b = append(b, stringPrefix)
	b = append(b, s...)
	return append(b, 0), nil
}

// EISAID is a compressed EISA ID such as "PNP0A03" (three letters, four hex
// digits), encoded as the DWord integer ASL's EISAID() produces.
type EISAID string

// Value returns the 32-bit compressed form.
func (id EISAID) Value() (uint32, error) {
	s := string(id)
	if len(s) != 7 {
		return 0, fmt.Errorf("%w: EISA ID %q is not 7 characters", ErrInvalid, s)
	}
	var v uint32
	for i := range 3 {
		c := s[i]
		if c < 'A' || c > 'Z' {
			return 0, fmt.Errorf("%w: EISA ID %q: %q is not an uppercase letter", ErrInvalid, s, c)
		}
		v = v<<5 | uint32(c-'@')
	}
	for i := 3; i < 7; i++ {
		c := s[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: EISA ID %q: %q is not an uppercase hex digit", ErrInvalid, s, c)
		}
		v = v<<4 | uint32(d)
	}
	// Stored big-endian: the vendor letters come first in memory.
	return v>>24 | v>>8&0xff00 | v<<8&0xff0000 | v<<24, nil
}

func (id EISAID) appendAML(b []byte) ([]byte, error) {
	v, err := id.Value()
	if err != nil {
		return nil, err
	}
	return append(b, dwordPrefix, byte(v), byte(v>>8), byte(v>>16), byte(v>>24)), nil
}

// Buffer is a buffer of raw bytes.
type Buffer []byte

func (buf Buffer) appendAML(b []byte) ([]byte, error) {
	body, err := Integer(len(buf)).appendAML(nil)
	if err != nil {
		return nil, err
	}
	body = append(body, buf...)
	return appendPkg(append(b, bufferOp), body)
}

// PackageOf is a package of up to 255 data objects.
type PackageOf []Object

// Package returns a package of elems.
func Package(elems ...Object) PackageOf { return PackageOf(elems) }

func (p PackageOf) appendAML(b []byte) ([]byte, error) {
	if len(p) > 255 {
		return nil, fmt.Errorf("%w: package of %d elements (VarPackage not supported)", ErrInvalid, len(p))
	}
	body, err := appendTerms([]byte{byte(len(p))}, p)
	if err != nil {
		return nil, err
	}
	return appendPkg(append(b, packageOp), body)
}

type name struct {
	path  string
	value Object
}

// Name declares path with the value v: Name(path, v).
func Name(path string, v Object) Object { return name{path, v} }

func (n name) appendAML(b []byte) ([]byte, error) {
	b, err := appendNameString(append(b, nameOp), n.path)
	if err != nil {
		return nil, err
	}
	if n.value == nil {
		return nil, fmt.Errorf("%w: Name(%s) without value", ErrInvalid, n.path)
	}
	return n.value.appendAML(b)
}

type scope struct {
	op    []byte
	path  string
	terms []Object
}

func (s scope) appendAML(b []byte) ([]byte, error) {
	body, err := appendNameString(nil, s.path)
	if err != nil {
		return nil, err
	}
	if body, err = appendTerms(body, s.terms); err != nil {
		return nil, err
	}
	return appendPkg(append(b, s.op...), body)
}

// Scope opens the namespace scope path: Scope(path) { terms }.
func Scope(path string, terms ...Object) Object {
	return scope{op: []byte{scopeOp}, path: path, terms: terms}
}

// Device declares a device: Device(path) { terms }.
func Device(path string, terms ...Object) Object {
	return scope{op: []byte{extOpPrefix, deviceOp}, path: path, terms: terms}
}

type method struct {
	path       string
	args       int
	serialized bool
	terms      []Object
}

// Method declares a control method with args arguments (0..7).
func Method(path string, args int, serialized bool, terms ...Object) Object {
	return method{path, args, serialized, terms}
}

func (m method) appendAML(b []byte) ([]byte, error) {
	if m.args < 0 || m.args > 7 {
		return nil, fmt.Errorf("%w: method %s with %d arguments", ErrInvalid, m.path, m.args)
	}
	body, err := appendNameString(nil, m.path)
	if err != nil {
		return nil, err
	}
	flags := byte(m.args)
	if m.serialized {
		flags |= 1 << 3
	}
	if body, err = appendTerms(append(body, flags), m.terms); err != nil {
		return nil, err
	}
	return appendPkg(append(b, methodOp), body)
}

type ret struct{ v Object }

// Return returns v from a method.
func Return(v Object) Object { return ret{v} }

func (r ret) appendAML(b []byte) ([]byte, error) {
	if r.v == nil {
		return nil, fmt.Errorf("%w: Return without value", ErrInvalid)
	}
	return r.v.appendAML(append(b, returnOp))
}
