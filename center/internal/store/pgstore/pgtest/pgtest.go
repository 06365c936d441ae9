// Package pgtest starts a private PostgreSQL server for tests: Debian's
// postgresql binaries (/usr/lib/postgresql/*/bin, installed by
// .ci/install-deps), a fresh cluster made by initdb in a temporary
// directory, listening on a private Unix socket directory and a free
// loopback port. No test talks to a shared or mocked database.
//
// PostgreSQL refuses to run as root, so when the tests run as root initdb
// and postgres run as the "postgres" OS user (the Debian package creates
// it) on directories chowned to it. The server is the test binary's child
// with a parent-death signal, so a killed test binary takes it down too;
// directories left by such a binary are removed by the next Start.
//
// A package's tests use one server for the whole binary and a fresh
// database per test:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.NewDatabase(t) // CREATE DATABASE, dropped at cleanup
//		...
//	}
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kioskcert/kioskcert/pkg/childproc"
	"github.com/kioskcert/kioskcert/pkg/freeport"
)

// Options tunes Start.
type Options struct {
	// Durable keeps fsync on. Tests run with fsync off (nothing survives a
	// machine crash, which tests do not need); benchmarks of commit
	// behaviour need it on.
	Durable bool
	// MaxConnections is the server's max_connections (default 200).
	MaxConnections int
	// Settings are extra server settings (name → value), as -c options.
	Settings map[string]string
}

// Server is a running private PostgreSQL server.
type Server struct {
	// Dir holds the cluster (Dir/data), the socket directory (Dir/run)
	// and the server log (Dir/postgres.log).
	Dir       string
	SocketDir string
	Port      int

	opts    Options
	bin     string
	cred    *syscall.Credential
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	dbCount atomic.Int64
}

// root holds every server's directory; names start with the owning test
// binary's process ID so a later Start can clean up after a killed binary.
// As root it is under /tmp whatever $TMPDIR says: the postgres user must
// be able to reach it, and a private $TMPDIR (mode 0700) would stop it.
var root = func() string {
	if os.Geteuid() == 0 {
		return "/tmp/kioskcert-pgtest"
	}
	return filepath.Join(os.TempDir(), "kioskcert-pgtest")
}()

// Start initialises a new cluster and starts a server on it.
func Start(opts Options) (*Server, error) {
	if opts.MaxConnections == 0 {
		opts.MaxConnections = 200
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cleanStale()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	dir, err := os.MkdirTemp(root, strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{Dir: dir, SocketDir: filepath.Join(dir, "run"), opts: opts, bin: bin}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	// Other users (postgres) must reach the directories inside.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if s.cred, err = serverCredential(); err != nil {
		return nil, err
	}
	for _, d := range []string{filepath.Join(dir, "data"), s.SocketDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		if s.cred != nil {
			if err := os.Chown(d, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return nil, fmt.Errorf("pgtest: chown %s to the postgres user: %w", d, err)
			}
		}
	}
	initdb := s.command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--locale=C", "-N")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	if s.Port, err = freeport.Loopback(); err != nil {
		return nil, err
	}
	if err := s.startServer(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// BinDir returns the directory of the newest installed PostgreSQL's
// binaries ($PGTEST_BINDIR overrides).
func BinDir() (string, error) {
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		return d, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(found) == 0 {
		return "", errors.New("pgtest: no PostgreSQL server under /usr/lib/postgresql/*/bin; run .ci/install-deps test (Debian package postgresql)")
	}
	sort.Slice(found, func(i, j int) bool { return versionOf(found[i]) < versionOf(found[j]) })
	return filepath.Dir(found[len(found)-1]), nil
}

func versionOf(path string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return v
}

// serverCredential is the postgres OS user when running as root (the server
// refuses root), nil otherwise (run as ourselves).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the postgres OS user (Debian package postgresql creates it): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.Dir
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
	// Go sets the parent-death signal after switching credentials, so it
	// survives the switch to the postgres user. SIGQUIT is PostgreSQL's
	// immediate shutdown: the postmaster takes its backends down with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	return cmd
}

func (s *Server) startServer() error {
	args := []string{"-D", filepath.Join(s.Dir, "data"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port=" + strconv.Itoa(s.Port),
		"-c", "unix_socket_directories=" + s.SocketDir,
		"-c", "max_connections=" + strconv.Itoa(s.opts.MaxConnections),
		"-c", "shared_buffers=128MB",
	}
	if !s.opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off")
	}
	names := make([]string, 0, len(s.opts.Settings))
	for k := range s.opts.Settings {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "-c", k+"="+s.opts.Settings[k])
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	cmd := s.command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := childproc.Start(cmd); err != nil {
		return fmt.Errorf("pgtest: starting postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited at start; see %s:\n%s", filepath.Join(s.Dir, "postgres.log"), s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stopServer(syscall.SIGQUIT)
			return fmt.Errorf("pgtest: postgres not ready after 30s: %v\n%s", err, s.logTail())
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "postgres.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stopServer signals the postmaster (SIGINT: fast shutdown; SIGQUIT:
// immediate) and waits for it.
func (s *Server) stopServer(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		return errors.New("pgtest: postgres did not stop within 30s; killed")
	}
}

// Stop stops the server (fast shutdown) and removes its directory.
func (s *Server) Stop() error {
	err := s.stopServer(syscall.SIGINT)
	return errors.Join(err, os.RemoveAll(s.Dir))
}

// StopServer stops the server (fast shutdown: clients are disconnected)
// and keeps the cluster, for Restart.
func (s *Server) StopServer() error { return s.stopServer(syscall.SIGINT) }

// Restart starts the server again on the same cluster, socket and port.
func (s *Server) Restart() error {
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		return errors.New("pgtest: server is running")
	}
	return s.startServer()
}

// URL returns a connection URL for database db over the Unix socket.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable", db, s.SocketDir, s.Port)
}

// TCPURL returns a connection URL for database db over loopback TCP.
func (s *Server) TCPURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// CreateDatabase creates an empty database and returns its URL. Creating
// from template0 copies a few megabytes; the FILE_COPY strategy (PostgreSQL
// 15 and later) is about twice as fast as the default here, since the
// checkpoint it needs costs little without fsync.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer c.Close(context.Background())
	create := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE template0"
	major, _ := strconv.Atoi(strings.FieldsFunc(c.PgConn().ParameterStatus("server_version"), func(r rune) bool { return r < '0' || r > '9' })[0])
	if major >= 15 && !s.opts.Durable {
		create += " STRATEGY FILE_COPY"
	}
	if _, err := c.Exec(ctx, create); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.URL(name), nil
}

// DropDatabase drops a database, disconnecting its clients.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// NewDatabase creates a fresh database for one test, dropped when the test
// ends, and returns its URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", s.dbCount.Add(1), sanitize(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, err := s.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.DropDatabase(ctx, name); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return url
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

// cleanStale removes the directories of test binaries that no longer run
// (killed before they could clean up; their postgres died with them).
func cleanStale() {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.SplitN(e.Name(), "-", 2)[0])
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if pm, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			if p, err := strconv.Atoi(strings.SplitN(string(pm), "\n", 2)[0]); err == nil && processAlive(p) {
				continue
			}
		}
		os.RemoveAll(dir)
	}
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
)

// Shared returns the test binary's server, starting it on first use. Main
// stops it.
func Shared() (*Server, error) {
	sharedOnce.Do(func() { shared, sharedErr = Start(Options{}) })
	return shared, sharedErr
}

// NewDatabase creates a fresh database on the shared server for one test.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s, err := Shared()
	if err != nil {
		t.Fatal(err)
	}
	return s.NewDatabase(t)
}

// Main runs the tests and then stops the shared server, if one started.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// PID is the postmaster's process ID (0 when stopped).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
