#!/usr/bin/python3
"""A My Number card client written for real cards, run against the virtual card.

It talks PC/SC through Debian's python3-pyscard and sends exactly what
jpki/myna (github.com/jpki/myna: the Go library libmyna and the current
Rust client) sends to a real card, with the same expectations of the
answers. myna itself cannot be built here (the Go module proxy does not
serve github.com/jpki/myna), so this is a reader written from that public
client's behaviour, independent of kioskcert's own card code: it shares no
code with cardreader/ and knows nothing of the virtual card.

What it does like myna, and where myna does it:
  - connects shared, any protocol, and takes only a card whose ATR starts
    3B 88 80 01 (Rust reader.rs connect);
  - "check": selects the JPKI application, EF 0006, reads 32 bytes and
    wants the token JPKIAPICCTOKEN2 (Go api.go CheckCard, which every
    `text` command runs first);
  - "mynumber": text AP, EF 0011, VERIFY, EF 0001, READ BINARY of 17 bytes,
    a BER value with tag D0 (Go text_ap.go ReadMyNumber, Rust text.rs);
  - "attrs": EF 0002, READ BINARY of 7 bytes, the BER header gives the
    size, then the whole file; FF 20 with DF 21..DF 25 (Go ReadAttributes);
  - "signature": EF 0003, READ BINARY of exactly 336 bytes; FF 30 with
    DF 31, DF 32, DF 33 (Go ReadSignature);
  - "cert": EF 0004, header then the rest (Rust read_binary_all);
  - "info": EF 0005, header then the rest; FF 40 with DF 41 (APID) and
    DF 42 (public key ID) (Rust text.rs basic_info);
  - "pinstatus": the retry counters of the text AP's PIN, PIN A and PIN B,
    the card-surface AP's PIN A and PIN B, JPKI's authentication PIN and
    signature password; each must answer 63 Cx (Rust pin.rs);
  - "jpki-certs": the JPKI authentication certificate and both CA
    certificates, header then the rest (Go jpki_ap.go ReadCertificate);
  - READ BINARY asks for at most 255 bytes (Le 00 = 256 when more remain)
    and requires 90 00 on every chunk (Go reader.go ReadBinary); VERIFY
    answers 63 Cx (wrong, x left) or 69 84 (blocked) (Go reader.go Verify).

Prints one JSON object on stdout; exits 1 with the reason on stderr when
the card does not answer as a real card does.
"""

import argparse
import json
import sys

from smartcard.System import readers
from smartcard.scard import SCARD_SHARE_SHARED

TEXT_AP = bytes.fromhex("D3921000310001010408")
SURFACE_AP = bytes.fromhex("D3921000310001010402")
JPKI_AP = bytes.fromhex("D392F000260100000001")


class CardError(Exception):
    pass


class Reader:
    def __init__(self, name):
        matches = [r for r in readers() if str(r) == name]
        if not matches:
            raise CardError("reader %r not found (readers: %s)" % (name, [str(r) for r in readers()]))
        self.conn = matches[0].createConnection()
        self.conn.connect(mode=SCARD_SHARE_SHARED)
        atr = bytes(self.conn.getATR())
        if not atr.startswith(bytes.fromhex("3B888001")):
            raise CardError("ATR %s is not a My Number card's (3B 88 80 01 …)" % atr.hex())

    def close(self):
        self.conn.disconnect()

    def tx(self, apdu):
        data, sw1, sw2 = self.conn.transmit(list(apdu))
        return bytes(data), (sw1 << 8) | sw2

    def select_df(self, aid):
        _, sw = self.tx(bytes([0x00, 0xA4, 0x04, 0x0C, len(aid)]) + aid)
        if sw != 0x9000:
            raise CardError("SELECT DF %s answered %04X" % (aid.hex(), sw))

    def select_ef(self, fid):
        _, sw = self.tx(bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + bytes.fromhex(fid))
        if sw != 0x9000:
            raise CardError("SELECT EF %s answered %04X" % (fid, sw))

    def verify(self, pin):
        b = pin.encode("ascii")
        _, sw = self.tx(bytes([0x00, 0x20, 0x00, 0x80, len(b)]) + b)
        if sw == 0x9000:
            return
        if sw >> 8 == 0x63:
            raise CardError("wrong PIN, %d tries left" % (sw & 0x0F))
        if sw == 0x6984:
            raise CardError("PIN blocked")
        raise CardError("VERIFY answered %04X" % sw)

    def lookup_pin(self):
        _, sw = self.tx(bytes([0x00, 0x20, 0x00, 0x80]))
        if sw >> 8 != 0x63:
            raise CardError("PIN status answered %04X, a real card answers 63 Cx" % sw)
        return sw & 0x0F

    def read_binary(self, pos, size):
        out = b""
        end = pos + size
        while pos < end:
            remaining = end - pos
            le = 0 if remaining > 0xFF else remaining
            data, sw = self.tx(bytes([0x00, 0xB0, (pos >> 8) & 0xFF, pos & 0xFF, le]))
            if sw != 0x9000:
                raise CardError("READ BINARY at %d for %d bytes answered %04X" % (pos, remaining, sw))
            if not data:
                raise CardError("READ BINARY at %d returned no data" % pos)
            out += data
            pos += len(data)
        return out

    def read_binary_all(self):
        head = self.read_binary(0, 7)
        tag_len, length, hdr = ber_header(head)
        return head + self.read_binary(7, hdr + length - 7)


def ber_header(b):
    """Returns (tag length, value length, header length) of a BER TLV."""
    i = 1
    if b[0] & 0x1F == 0x1F:
        while b[i] & 0x80:
            i += 1
        i += 1
    tag_len = i
    first = b[i]
    i += 1
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        length = int.from_bytes(b[i:i + n], "big")
        i += n
    return tag_len, length, i


def ber_items(b):
    """Splits concatenated BER TLVs into (tag bytes, value) pairs."""
    out = []
    while b:
        tag_len, length, hdr = ber_header(b)
        out.append((b[:tag_len], b[hdr:hdr + length]))
        b = b[hdr + length:]
    return out


def ber_value(b, want_tag):
    tag_len, length, hdr = ber_header(b)
    if b[:tag_len] != want_tag:
        raise CardError("tag %s, want %s" % (b[:tag_len].hex(), want_tag.hex()))
    return b[hdr:hdr + length]


def connect(args):
    r = Reader(args.reader)
    # myna's `text` commands first check that the card is a My Number card.
    r.select_df(JPKI_AP)
    r.select_ef("0006")
    token = r.read_binary(0, 0x20).rstrip(b" ").decode("ascii")
    if token != "JPKIAPICCTOKEN2":
        raise CardError("token %r: not a My Number card" % token)
    return r


def cmd_check(args):
    r = connect(args)
    r.close()
    return {"token": "JPKIAPICCTOKEN2"}


def cmd_mynumber(args):
    r = connect(args)
    r.select_df(TEXT_AP)
    r.select_ef("0011")
    r.verify(args.pin)
    r.select_ef("0001")
    v = ber_value(r.read_binary(0, 17), b"\xD0")
    r.close()
    return {"mynumber": v.decode("ascii")}


def cmd_attrs(args):
    r = connect(args)
    r.select_df(TEXT_AP)
    r.select_ef("0011")
    r.verify(args.pin)
    r.select_ef("0002")
    head = r.read_binary(0, 7)
    _, length, hdr = ber_header(head)
    data = r.read_binary(0, hdr + length)
    items = dict((t.hex(), v) for t, v in ber_items(ber_value(data, b"\xFF\x20")))
    r.close()
    return {
        "header": items["df21"].hex(),
        "name": items["df22"].decode("utf-8"),
        "address": items["df23"].decode("utf-8"),
        "birth": items["df24"].decode("ascii"),
        "sex": items["df25"].decode("ascii"),
    }


def cmd_signature(args):
    r = connect(args)
    r.select_df(TEXT_AP)
    r.select_ef("0011")
    r.verify(args.pin)
    r.select_ef("0003")
    data = r.read_binary(0, 336)
    items = dict((t.hex(), v) for t, v in ber_items(ber_value(data, b"\xFF\x30")))
    r.close()
    return {"mynumberHash": items["df31"].hex(), "attrsHash": items["df32"].hex(), "signature": items["df33"].hex()}


def cmd_cert(args):
    r = connect(args)
    r.select_df(TEXT_AP)
    r.select_ef("0004")
    data = r.read_binary_all()
    items = dict((t.hex(), v) for t, v in ber_items(ber_value(data, b"\x7F\x21")))
    r.close()
    body = items["5f4e"]
    return {"issuerKeyID": body[:16].hex(), "subjectKeyID": body[16:32].hex(), "signatureLen": len(items["5f37"])}


def cmd_info(args):
    r = connect(args)
    r.select_df(TEXT_AP)
    r.select_ef("0005")
    data = r.read_binary_all()
    items = dict((t.hex(), v) for t, v in ber_items(ber_value(data, b"\xFF\x40")))
    r.close()
    return {"apid": items["df41"].hex(), "publicKeyID": items["df42"].hex()}


def cmd_pinstatus(args):
    r = connect(args)
    out = {}
    for aid, name, efs in [(TEXT_AP, "text", ["0011", "0014", "0015"]),
                           (SURFACE_AP, "surface", ["0013", "0012"]),
                           (JPKI_AP, "jpki", ["0018", "001B"])]:
        r.select_df(aid)
        for ef in efs:
            r.select_ef(ef)
            out[name + "-" + ef] = r.lookup_pin()
    r.close()
    return out


def cmd_jpki_certs(args):
    r = connect(args)
    r.select_df(JPKI_AP)
    out = {}
    for ef in ["000A", "000B", "0002"]:
        r.select_ef(ef)
        der = r.read_binary_all()
        if der[0] != 0x30:
            raise CardError("EF %s is not a DER certificate" % ef)
        out[ef] = len(der)
    r.close()
    return out


def cmd_reselect(args):
    """Verifies the PIN, selects the application again and reads EF 0001:
    a real card has forgotten the verification and answers 69 82."""
    r = connect(args)
    r.select_df(TEXT_AP)
    r.select_ef("0011")
    r.verify(args.pin)
    r.select_df(TEXT_AP)
    r.select_ef("0001")
    _, sw = r.tx(bytes([0x00, 0xB0, 0x00, 0x00, 17]))
    r.close()
    return {"sw": "%04X" % sw}


COMMANDS = {
    "check": cmd_check, "mynumber": cmd_mynumber, "attrs": cmd_attrs, "signature": cmd_signature,
    "cert": cmd_cert, "info": cmd_info, "pinstatus": cmd_pinstatus, "jpki-certs": cmd_jpki_certs,
    "reselect": cmd_reselect,
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reader", required=True)
    p.add_argument("--pin", default="")
    p.add_argument("command", choices=sorted(COMMANDS))
    args = p.parse_args()
    try:
        out = COMMANDS[args.command](args)
    except (CardError, IndexError, KeyError, UnicodeDecodeError) as e:
        print("mynaclient %s: %s: %s" % (args.command, type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
