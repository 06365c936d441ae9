package cardreader

import (
	"context"
	"errors"
	"fmt"

	"github.com/kioskcert/kioskcert/pkg/carddata"
	"github.com/kioskcert/kioskcert/pkg/tlv"
)

// MaxPINTries is the input-assist PIN's retry limit.
const MaxPINTries = 3

// Session is an open input-assist application on one card. It is not safe
// for concurrent use; one resident, one session.
type Session struct {
	t        Transport
	ext      bool // extended-length READ BINARY in use
	apdus    int
	current  uint16 // currently selected EF, 0 for none
	tries    int    // last known PIN tries left; -1 before the first status read
	verified bool
}

// Open selects the input-assist application on the card. A card without it
// yields ErrNotMyNumberCard.
func Open(ctx context.Context, t Transport) (*Session, error) {
	s := &Session{t: t, ext: t.ExtendedLength(), tries: -1}
	resp, err := s.transmit(ctx, Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x0C, Data: carddata.AID})
	if err != nil {
		return nil, fmt.Errorf("cardreader: select input-assist application: %w", err)
	}
	switch resp.SW {
	case SWOK:
		return s, nil
	case SWFileNotFound, SWFunctionUnsupported, SWWrongData, SWINSUnsupported, SWCLAUnsupported, SWWrongP1P2:
		return nil, ErrNotMyNumberCard
	default:
		return nil, fmt.Errorf("%w: select answered %04X", ErrNotMyNumberCard, resp.SW)
	}
}

// APDUCount returns how many command APDUs the session has sent.
func (s *Session) APDUCount() int { return s.apdus }

// ExtendedLength reports whether the session reads with extended-length APDUs.
func (s *Session) ExtendedLength() bool { return s.ext }

func (s *Session) transmit(ctx context.Context, c Command) (Response, error) {
	b, err := c.Bytes()
	if err != nil {
		return Response{}, err
	}
	s.apdus++
	out, err := s.t.Transmit(ctx, b)
	clear(b) // may hold the PIN
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrCardRemoved) {
			return Response{}, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		}
		return Response{}, err
	}
	resp, err := ParseResponse(out)
	if err != nil {
		return Response{}, fmt.Errorf("%w: %w", ErrCardData, err)
	}
	return resp, nil
}

func (s *Session) selectEF(ctx context.Context, id uint16) error {
	if s.current == id {
		return nil
	}
	resp, err := s.transmit(ctx, Command{CLA: 0x00, INS: 0xA4, P1: 0x02, P2: 0x0C, Data: []byte{byte(id >> 8), byte(id)}})
	if err != nil {
		return fmt.Errorf("cardreader: select EF %04X: %w", id, err)
	}
	if resp.SW != SWOK {
		return fmt.Errorf("cardreader: select EF %04X: %w", id, swError(resp.SW))
	}
	s.current = id
	return nil
}

// PINTriesLeft reads the PIN retry counter without spending a try: VERIFY
// with no data asks only for the status. A blocked PIN yields ErrPINBlocked.
func (s *Session) PINTriesLeft(ctx context.Context) (int, error) {
	if err := s.selectEF(ctx, carddata.EFPIN); err != nil {
		return 0, err
	}
	resp, err := s.transmit(ctx, Command{CLA: 0x00, INS: 0x20, P1: 0x00, P2: 0x80})
	if err != nil {
		return 0, fmt.Errorf("cardreader: read PIN status: %w", err)
	}
	switch {
	case resp.SW == SWOK:
		// Already verified in this card session; the counter is full again.
		s.verified, s.tries = true, MaxPINTries
	case resp.SW>>4 == 0x63C:
		s.tries = int(resp.SW & 0x0F)
		if s.tries == 0 {
			return 0, ErrPINBlocked
		}
	case pinBlocked(resp.SW):
		s.tries = 0
		return 0, ErrPINBlocked
	default:
		return 0, fmt.Errorf("cardreader: read PIN status: %w", swError(resp.SW))
	}
	return s.tries, nil
}

// VerifyPIN presents the resident's 4-digit PIN to the card. The PIN is
// checked for format before it is sent, and never sent when the counter says
// the PIN is blocked, so the kiosk cannot spend a try by mistake. The caller
// should wipe pin afterwards; this function keeps no copy.
func (s *Session) VerifyPIN(ctx context.Context, pin []byte) error {
	if len(pin) != 4 {
		return ErrPINFormat
	}
	for _, c := range pin {
		if c < '0' || c > '9' {
			return ErrPINFormat
		}
	}
	if s.tries < 0 {
		if _, err := s.PINTriesLeft(ctx); err != nil {
			return err
		}
	}
	if s.tries == 0 {
		return ErrPINBlocked
	}
	if err := s.selectEF(ctx, carddata.EFPIN); err != nil {
		return err
	}
	data := make([]byte, 4)
	copy(data, pin)
	resp, err := s.transmit(ctx, Command{CLA: 0x00, INS: 0x20, P1: 0x00, P2: 0x80, Data: data})
	clear(data)
	if err != nil {
		return fmt.Errorf("cardreader: verify PIN: %w", err)
	}
	switch {
	case resp.SW == SWOK:
		s.verified, s.tries = true, MaxPINTries
		return nil
	case resp.SW>>4 == 0x63C:
		s.tries = int(resp.SW & 0x0F)
		return &PINIncorrectError{TriesLeft: s.tries}
	case pinBlocked(resp.SW):
		s.tries = 0
		return ErrPINBlocked
	default:
		return fmt.Errorf("cardreader: verify PIN: %w", swError(resp.SW))
	}
}

// ReadCardData reads My Number, the four items, the signature and the
// certificate. Each file is trimmed to its TLV (padding dropped) so that the
// same card always yields the same bytes whatever the read strategy.
func (s *Session) ReadCardData(ctx context.Context) (carddata.Raw, error) {
	var raw carddata.Raw
	for _, f := range []struct {
		id  uint16
		dst *[]byte
	}{
		{carddata.EFMyNumber, &raw.MyNumber},
		{carddata.EFFourItems, &raw.FourItems},
		{carddata.EFSignature, &raw.Signature},
		{carddata.EFCertificate, &raw.Certificate},
	} {
		b, err := s.ReadEF(ctx, f.id)
		if err != nil {
			raw.Wipe()
			return carddata.Raw{}, err
		}
		*f.dst = b
	}
	return raw, nil
}

// headerProbe is how many bytes a strict card is first asked for: enough
// for any TLV header the card uses (a two-byte tag and a length of up to
// five bytes), as jpki/myna reads every file.
const headerProbe = 7

// errLeBeyondFile is readBinary's signal that the card refused an Le that
// runs past the end of the file (67 00) instead of answering 62 82.
var errLeBeyondFile = errors.New("cardreader: card refuses reads past the end of a file")

// ReadEF selects a TLV-structured EF and reads it whole, however long it
// is: the first READ BINARY asks for as much as one APDU can carry, the TLV
// header in the answer says how long the file's content is, and only the
// remaining bytes are read after that. No byte is read twice. A card may end
// a read early with 62 82 (end of file) or refuse the next offset with 6B 00;
// both end the file. A strict card that refuses an Le running past the end
// (67 00) is read header first: 7 bytes, then exactly what the header
// announces.
func (s *Session) ReadEF(ctx context.Context, id uint16) ([]byte, error) {
	if err := s.selectEF(ctx, id); err != nil {
		return nil, err
	}
	buf, eof, err := s.readBinary(ctx, id, 0, s.maxNe())
	if errors.Is(err, errLeBeyondFile) {
		buf, eof, err = s.readBinary(ctx, id, 0, headerProbe)
	}
	if err != nil {
		return nil, err
	}
	_, length, hdr, err := tlv.ReadHeader(buf)
	if err != nil {
		clear(buf)
		return nil, fmt.Errorf("%w: EF %04X: %w", ErrCardData, id, err)
	}
	total := hdr + length
	for len(buf) < total {
		if eof {
			clear(buf)
			return nil, fmt.Errorf("%w: EF %04X ends before its %d-byte content", ErrCardData, id, total)
		}
		var more []byte
		more, eof, err = s.readBinary(ctx, id, len(buf), min(total-len(buf), s.maxNe()))
		if err != nil {
			clear(buf)
			return nil, err
		}
		if len(more) == 0 {
			clear(buf)
			return nil, fmt.Errorf("%w: EF %04X returned no data at offset %d", ErrCardData, id, len(buf))
		}
		buf = append(buf, more...)
		clear(more)
	}
	clear(buf[total:])
	return buf[:total:total], nil
}

func (s *Session) maxNe() int {
	if s.ext {
		return 65536
	}
	return 256
}

// readBinary issues READ BINARY and interprets the warnings real cards give
// when asked for more than the file holds.
func (s *Session) readBinary(ctx context.Context, id uint16, offset, ne int) (data []byte, eof bool, err error) {
	if offset > 0x7FFF {
		return nil, false, fmt.Errorf("%w: EF %04X offset %d beyond READ BINARY's range", ErrCardData, id, offset)
	}
	for attempt := 0; attempt < 3; attempt++ {
		resp, err := s.transmit(ctx, Command{CLA: 0x00, INS: 0xB0, P1: byte(offset >> 8), P2: byte(offset), Ne: ne})
		if err != nil {
			return nil, false, fmt.Errorf("cardreader: read EF %04X: %w", id, err)
		}
		switch {
		case resp.SW == SWOK:
			return copyOut(resp.Data), false, nil
		case resp.SW == SWEndOfFile:
			return copyOut(resp.Data), true, nil
		case resp.SW>>8 == 0x6C && resp.SW&0xFF != 0:
			// Wrong Le: the card says exactly how many bytes it has.
			ne = int(resp.SW & 0xFF)
		case resp.SW == SWWrongLength && s.ext:
			// The card or reader refuses extended length after all: fall
			// back to short reads for the rest of the session.
			s.ext = false
			ne = min(ne, 256)
		case resp.SW == SWWrongLength && offset == 0 && ne > headerProbe:
			// A short Le the card still refuses: it wants no Le past the
			// end of the file. ReadEF reads the header first instead.
			return nil, false, errLeBeyondFile
		case resp.SW == SWOffsetOutside && offset > 0:
			return nil, true, nil
		default:
			return nil, false, fmt.Errorf("cardreader: read EF %04X: %w", id, swError(resp.SW))
		}
	}
	return nil, false, fmt.Errorf("%w: EF %04X: card kept refusing the read length", ErrCardData, id)
}

func copyOut(b []byte) []byte {
	out := append([]byte(nil), b...)
	clear(b)
	return out
}
