// Command cardsim is the virtual My Number card. It plugs a demo resident's
// card into a real pcscd through the vsmartcard vpcd driver, so that any
// PC/SC application (the kiosk agent, cardcheck, pcsc_scan) sees it in the
// reader "Virtual PCD".
//
//	cardsim keygen -dir DIR           create a test card issuing authority ("J-LIS test CA")
//	cardsim run -authority DIR [-resident ID] [-vpcd ADDR] [-extended] [-foreign] [-tamper mynumber|fouritems]
//
// run reads commands on standard input, one per line: "insert [ID]",
// "remove", "list", "quit". It starts with the card inserted.
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

	"github.com/kioskcert/kioskcert/cardreader/virtualcard"
	"github.com/kioskcert/kioskcert/cardreader/vpcd"
	"github.com/kioskcert/kioskcert/pkg/carddata"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "keygen":
		err = keygen(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cardsim:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cardsim keygen -dir DIR | cardsim run -authority DIR [-resident ID] [-vpcd ADDR] [-extended] [-foreign] [-tamper mynumber|fouritems]")
	os.Exit(2)
}

func keygen(args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ExitOnError)
	dir := fs.String("dir", "", "directory for "+carddata.AuthorityKeyFile+" and "+carddata.AuthorityTrustFile)
	name := fs.String("name", "JLIS-TEST-CA", "readable prefix of the 16-byte key ID")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("keygen: -dir is required")
	}
	a, err := virtualcard.GenerateAuthority(*name)
	if err != nil {
		return err
	}
	if err := carddata.SaveAuthority(*dir, a); err != nil {
		return err
	}
	fmt.Printf("test card issuing authority %X written to %s (trust file %s)\n", a.KeyID, *dir, carddata.AuthorityTrustFile)
	return nil
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	authDir := fs.String("authority", "", "directory made by cardsim keygen")
	resident := fs.String("resident", "hanako", "demo resident (assets/demo/residents.json)")
	addr := fs.String("vpcd", vpcd.DefaultAddr, "vpcd driver address")
	ext := fs.Bool("extended", true, "card accepts extended-length APDUs")
	foreign := fs.Bool("foreign", false, "insert a card that is not a My Number card")
	tamper := fs.String("tamper", "", "tamper with the signed data: mynumber or fouritems")
	fs.Parse(args)
	if *authDir == "" && !*foreign {
		return errors.New("run: -authority is required (create one with cardsim keygen)")
	}
	var set *virtualcard.DemoSet
	if !*foreign {
		a, err := carddata.LoadAuthority(*authDir)
		if err != nil {
			return err
		}
		if set, err = virtualcard.NewDemoSet(a); err != nil {
			return err
		}
	}
	makeCard := func(id string) (*virtualcard.Card, error) {
		if *foreign {
			return virtualcard.NewForeign(), nil
		}
		c, _, err := set.Card(id, virtualcard.Options{ExtendedLength: *ext})
		if err != nil {
			return nil, err
		}
		switch *tamper {
		case "":
		case "mynumber":
			c.TamperMyNumber()
		case "fouritems":
			c.TamperFourItems()
		default:
			return nil, fmt.Errorf("-tamper %q: want mynumber or fouritems", *tamper)
		}
		return c, nil
	}

	var conn *vpcd.Connection
	insert := func(id string) error {
		if conn != nil {
			conn.Remove()
		}
		c, err := makeCard(id)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err = vpcd.Insert(ctx, *addr, c)
		if err != nil {
			return err
		}
		fmt.Printf("inserted %s\n", c)
		return nil
	}
	if err := insert(*resident); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch f[0] {
		case "insert":
			id := *resident
			if len(f) > 1 {
				id = f[1]
			}
			err = insert(id)
		case "remove":
			if conn != nil {
				conn.Remove()
				conn = nil
			}
			fmt.Println("removed")
		case "list":
			if set != nil {
				for _, r := range set.Residents.Residents {
					fmt.Printf("%-10s %s\n", r.ID, r.About)
				}
			}
		case "quit":
			if conn != nil {
				conn.Remove()
			}
			return nil
		default:
			err = fmt.Errorf("unknown command %q (insert [ID], remove, list, quit)", f[0])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cardsim:", err)
		}
	}
	if conn != nil {
		// Standard input closed: keep the card in until interrupted.
		<-conn.Done()
	}
	return in.Err()
}
