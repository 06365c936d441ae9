// Command cardcheck lets a store-terminal integrator check a card reader in
// minutes: it lists the PC/SC readers, shows the PIN tries left on the My
// Number card in the reader (without spending one), and with a PIN reads
// and verifies the card-info input-assist application.
//
//	cardcheck -list
//	cardcheck [-reader NAME] [-trust FILE] [-pin-stdin] [-show]
//
// The PIN is read from standard input (-pin-stdin), never from the command
// line, where other users could see it. -show prints the four items; use it
// with test cards only.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kioskcert/kioskcert/cardreader"
	"github.com/kioskcert/kioskcert/cardreader/pcsc"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cardcheck:", err)
		os.Exit(1)
	}
}

func run() error {
	list := flag.Bool("list", false, "list readers and exit")
	readerName := flag.String("reader", "", "reader name or part of it (default: first reader with a card)")
	trust := flag.String("trust", "", "PEM file of card issuing-authority keys (required to verify)")
	pinStdin := flag.Bool("pin-stdin", false, "read the 4-digit PIN from standard input and read the card")
	show := flag.Bool("show", false, "print the four items and My Number (test cards only)")
	ext := flag.String("extended", "auto", "extended-length APDUs: auto, on or off")
	timeout := flag.Duration("timeout", 30*time.Second, "overall deadline")
	flag.Parse()

	if *list {
		names, err := pcsc.ListReaders()
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Println(n)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r, err := pcsc.Open(pcsc.Options{Reader: *readerName, Extended: pcsc.ExtendedMode(*ext)})
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Printf("reader: %s\n", r.Name())
	if ok, err := r.CardPresent(ctx); err != nil {
		return err
	} else if !ok {
		fmt.Println("waiting for a card...")
		if err := r.WaitForCard(ctx); err != nil {
			return err
		}
	}
	tr, err := r.Connect(ctx)
	if err != nil {
		return err
	}
	defer tr.Close()
	s, err := cardreader.Open(ctx, tr)
	if err != nil {
		return err
	}
	fmt.Printf("My Number card: yes (extended length: %v)\n", s.ExtendedLength())
	left, err := s.PINTriesLeft(ctx)
	if errors.Is(err, cardreader.ErrPINBlocked) {
		fmt.Println("PIN: BLOCKED — the resident must reset it at the municipal office")
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Printf("PIN tries left: %d\n", left)
	if !*pinStdin {
		return nil
	}
	if left == 1 {
		fmt.Println("warning: one try left; a wrong PIN now blocks the card")
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("read PIN from standard input: %w", err)
	}
	pin := []byte(strings.TrimSpace(line))
	err = s.VerifyPIN(ctx, pin)
	clear(pin)
	if err != nil {
		return err
	}
	raw, err := s.ReadCardData(ctx)
	if err != nil {
		return err
	}
	defer raw.Wipe()
	fmt.Printf("read %d+%d+%d+%d bytes in %d APDUs\n", len(raw.MyNumber), len(raw.FourItems), len(raw.Signature), len(raw.Certificate), s.APDUCount())
	if *trust == "" {
		fmt.Println("signature: not checked (give -trust FILE)")
		return nil
	}
	b, err := os.ReadFile(*trust)
	if err != nil {
		return err
	}
	keys, err := carddata.ParseIssuerKeys(b)
	if err != nil {
		return err
	}
	v, err := carddata.NewVerifier(keys...)
	if err != nil {
		return err
	}
	d, err := v.Verify(raw)
	if err != nil {
		return err
	}
	fmt.Printf("signature: valid (issuer key %X)\n", d.IssuerKeyID)
	if *show {
		fmt.Printf("My Number: %s\nname: %s\naddress: %s\nbirth date: %s\nsex: %c\n",
			d.MyNumber, d.FourItems.Name, d.FourItems.Address, d.FourItems.BirthDate, d.FourItems.Sex)
	} else {
		fmt.Printf("My Number: ********%s\n", d.MyNumber[8:])
	}
	return nil
}
