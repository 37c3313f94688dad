package promtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

const (
	// startTimeout bounds the wait for /-/ready.
	startTimeout = time.Minute
	// stopTimeout is how long SIGTERM gets before SIGKILL.
	stopTimeout = 30 * time.Second
	// apiTimeout bounds one API call.
	apiTimeout = 10 * time.Second
)

// Server is a Prometheus server a test started: its own directory, a free
// loopback port, stopped by its PID when the test ends.
type Server struct {
	URL     string
	Dir     string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// Start runs prometheus (the binary's path) with the configuration config
// and the files (rule files, named as config names them) in a temporary
// directory, and waits until it is ready.
func Start(tb testing.TB, prometheus string, config []byte, files map[string][]byte) *Server {
	tb.Helper()
	dir := tb.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, config, 0o644); err != nil {
		tb.Fatal(err)
	}
	// The port is free when picked; another process may take it before
	// Prometheus binds it, so a start that fails is tried again.
	var lastErr error
	for range 3 {
		s, err := start(dir, prometheus, cfg)
		if err == nil {
			tb.Cleanup(func() {
				if err := s.stop(); err != nil {
					tb.Errorf("prometheus: %v", err)
				}
			})
			return s
		}
		lastErr = err
	}
	tb.Fatalf("prometheus did not start: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func start(dir, prometheus, cfg string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(dir, "prometheus."+strconv.Itoa(port)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(prometheus, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies, Prometheus dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + addr, Dir: dir, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/-/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("prometheus exited at start:\n%s", s.Logs())
		case <-time.After(100 * time.Millisecond): // polling interval
		}
		if time.Now().After(deadline) {
			_ = s.stop()
			return nil, fmt.Errorf("prometheus not ready within %s:\n%s", startTimeout, s.Logs())
		}
	}
}

// Logs returns what Prometheus logged.
func (s *Server) Logs() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// stop sends SIGTERM to the PID it started, then SIGKILL if it has not
// exited within stopTimeout.
func (s *Server) stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("PID %d did not stop within %s of SIGTERM", s.cmd.Process.Pid, stopTimeout)
	}
}

// api GETs path with query and decodes the data of a success answer into v.
func (s *Server) api(ctx context.Context, path string, query url.Values, v any) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	u := s.URL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("GET %s: %s: %w", path, bytes.TrimSpace(b), err)
	}
	if env.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, env.Error)
	}
	return json.Unmarshal(env.Data, v)
}

// MetricNames returns every metric name Prometheus holds.
func (s *Server) MetricNames(ctx context.Context) ([]string, error) {
	var names []string
	err := s.api(ctx, "/api/v1/label/__name__/values", nil, &names)
	return names, err
}

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Query evaluates expr now; a result that is not a vector (a scalar) is
// returned as one sample without labels.
func (s *Server) Query(ctx context.Context, expr string) ([]Sample, error) {
	var res struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := s.api(ctx, "/api/v1/query", url.Values{"query": {expr}}, &res); err != nil {
		return nil, err
	}
	switch res.ResultType {
	case "vector":
		var out []Sample
		err := json.Unmarshal(res.Result, &out)
		return out, err
	case "scalar", "string":
		var v [2]any
		err := json.Unmarshal(res.Result, &v)
		return []Sample{{Value: v}}, err
	}
	return nil, fmt.Errorf("query %s: result of type %s", expr, res.ResultType)
}

// Target is one scrape target's state.
type Target struct {
	Labels    map[string]string `json:"labels"`
	ScrapeURL string            `json:"scrapeUrl"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

// Targets returns the active scrape targets.
func (s *Server) Targets(ctx context.Context) ([]Target, error) {
	var res struct {
		Active []Target `json:"activeTargets"`
	}
	err := s.api(ctx, "/api/v1/targets", nil, &res)
	return res.Active, err
}

// RuleState is one loaded rule's state.
type RuleState struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	State     string `json:"state"` // alerting rules: inactive, pending, firing
}

// RuleStates returns every loaded rule.
func (s *Server) RuleStates(ctx context.Context) ([]RuleState, error) {
	var res struct {
		Groups []struct {
			Rules []RuleState `json:"rules"`
		} `json:"groups"`
	}
	if err := s.api(ctx, "/api/v1/rules", nil, &res); err != nil {
		return nil, err
	}
	var out []RuleState
	for _, g := range res.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		return nil, errors.New("no rules loaded")
	}
	return out, nil
}
