package cardreader

import (
	"errors"
	"fmt"
)

// Command is an ISO/IEC 7816-4 command APDU.
type Command struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	// Ne is the maximum number of response bytes expected: 0 for none, up
	// to 256 in short form, up to 65536 in extended form.
	Ne int
}

// Response is an ISO/IEC 7816-4 response APDU.
type Response struct {
	Data []byte
	SW   uint16
}

// SW1 returns the first status byte.
func (r Response) SW1() byte { return byte(r.SW >> 8) }

// SW2 returns the second status byte.
func (r Response) SW2() byte { return byte(r.SW) }

// APDU encoding errors.
var (
	// ErrAPDUTooLong means data or Ne exceeds what even extended length allows.
	ErrAPDUTooLong = errors.New("cardreader: APDU field too long")
	// ErrAPDUMalformed means bytes do not form a valid command or response APDU.
	ErrAPDUMalformed = errors.New("cardreader: malformed APDU")
)

// Extended reports whether the command needs extended-length encoding.
func (c Command) Extended() bool { return len(c.Data) > 255 || c.Ne > 256 }

// Bytes encodes the command in short form when it fits and in extended form
// otherwise (ISO/IEC 7816-4 §5.1, cases 1–4).
func (c Command) Bytes() ([]byte, error) {
	if len(c.Data) > 65535 || c.Ne < 0 || c.Ne > 65536 {
		return nil, ErrAPDUTooLong
	}
	out := []byte{c.CLA, c.INS, c.P1, c.P2}
	ext := c.Extended()
	if len(c.Data) > 0 {
		if ext {
			out = append(out, 0, byte(len(c.Data)>>8), byte(len(c.Data)))
		} else {
			out = append(out, byte(len(c.Data)))
		}
		out = append(out, c.Data...)
	}
	if c.Ne > 0 {
		switch {
		case !ext:
			out = append(out, byte(c.Ne)) // 256 encodes as 00
		case len(c.Data) > 0:
			out = append(out, byte(c.Ne>>8), byte(c.Ne)) // 65536 encodes as 00 00
		default:
			out = append(out, 0, byte(c.Ne>>8), byte(c.Ne))
		}
	}
	return out, nil
}

// ParseCommand decodes a command APDU, accepting the short and extended
// forms of cases 1–4 and nothing else.
func ParseCommand(b []byte) (Command, error) {
	if len(b) < 4 {
		return Command{}, fmt.Errorf("%w: %d bytes, need at least 4", ErrAPDUMalformed, len(b))
	}
	c := Command{CLA: b[0], INS: b[1], P1: b[2], P2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return c, nil
	case len(body) == 1: // case 2 short
		c.Ne = neShort(body[0])
		return c, nil
	case body[0] != 0: // case 3 or 4 short
		lc := int(body[0])
		switch len(body) {
		case 1 + lc:
			c.Data = body[1:]
		case 2 + lc:
			c.Data = body[1 : 1+lc]
			c.Ne = neShort(body[1+lc])
		default:
			return Command{}, fmt.Errorf("%w: Lc %d does not match %d body bytes", ErrAPDUMalformed, lc, len(body))
		}
		return c, nil
	case len(body) == 3: // case 2 extended: 00 Le1 Le2
		c.Ne = neExtended(body[1], body[2])
		return c, nil
	case len(body) < 3:
		return Command{}, fmt.Errorf("%w: extended length field truncated", ErrAPDUMalformed)
	default: // case 3 or 4 extended: 00 Lc1 Lc2 data [Le1 Le2]
		lc := int(body[1])<<8 | int(body[2])
		if lc == 0 {
			return Command{}, fmt.Errorf("%w: extended Lc of zero", ErrAPDUMalformed)
		}
		switch len(body) {
		case 3 + lc:
			c.Data = body[3:]
		case 5 + lc:
			c.Data = body[3 : 3+lc]
			c.Ne = neExtended(body[3+lc], body[4+lc])
		default:
			return Command{}, fmt.Errorf("%w: extended Lc %d does not match %d body bytes", ErrAPDUMalformed, lc, len(body))
		}
		return c, nil
	}
}

func neShort(b byte) int {
	if b == 0 {
		return 256
	}
	return int(b)
}

func neExtended(hi, lo byte) int {
	n := int(hi)<<8 | int(lo)
	if n == 0 {
		return 65536
	}
	return n
}

// ParseResponse splits a response APDU into data and status word.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 2 {
		return Response{}, fmt.Errorf("%w: response of %d bytes has no status word", ErrAPDUMalformed, len(b))
	}
	n := len(b) - 2
	return Response{Data: b[:n:n], SW: uint16(b[n])<<8 | uint16(b[n+1])}, nil
}

// Bytes encodes the response: data followed by SW1 SW2.
func (r Response) Bytes() []byte {
	out := make([]byte, 0, len(r.Data)+2)
	out = append(out, r.Data...)
	return append(out, byte(r.SW>>8), byte(r.SW))
}

// Status words the input-assist application and ISO/IEC 7816-4 use.
const (
	SWOK             uint16 = 0x9000
	SWEndOfFile      uint16 = 0x6282 // fewer bytes than Ne before the end of the file
	SWWrongLength    uint16 = 0x6700
	SWSecurityStatus uint16 = 0x6982 // access conditions not satisfied (PIN not verified)
	SWPINBlocked     uint16 = 0x6983 // authentication method blocked
	// SWReferenceDataBlocked (reference data not usable) is how some cards
	// and readers report a blocked PIN: jpki/myna treats 69 84 as
	// "暗証番号がブロックされています". It means the same as 69 83 here.
	SWReferenceDataBlocked uint16 = 0x6984
	SWConditionsNotMet     uint16 = 0x6985
	SWNoCurrentEF          uint16 = 0x6986 // command not allowed: no current EF
	SWWrongData            uint16 = 0x6A80
	SWFunctionUnsupported  uint16 = 0x6A81
	SWFileNotFound         uint16 = 0x6A82
	SWWrongP1P2            uint16 = 0x6A86
	SWOffsetOutside        uint16 = 0x6B00
	SWINSUnsupported       uint16 = 0x6D00
	SWCLAUnsupported       uint16 = 0x6E00
	SWUnknown              uint16 = 0x6F00
)

// pinBlocked reports whether sw says the PIN can no longer be tried.
func pinBlocked(sw uint16) bool { return sw == SWPINBlocked || sw == SWReferenceDataBlocked }

// swError maps a failing status word to an error. Callers wrap it with the
// operation that failed.
func swError(sw uint16) error {
	switch {
	case sw>>4 == 0x63C:
		return &PINIncorrectError{TriesLeft: int(sw & 0x0F)}
	case pinBlocked(sw):
		return ErrPINBlocked
	case sw == SWSecurityStatus:
		return ErrSecurityStatus
	case sw == SWFileNotFound:
		return ErrFileNotFound
	default:
		return &StatusError{SW: sw}
	}
}
