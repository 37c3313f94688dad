package volmaster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"

	"github.com/volplugin/volplugin/config"
)

// maxBody bounds request bodies; policies and options are small.
const maxBody = 1 << 20

type ctxKey int

const requestIDKey ctxKey = iota

// statusOf maps an error's kind to an HTTP status.
func statusOf(err error) int {
	switch config.ErrorCode(err) {
	case config.CodeInvalid:
		return http.StatusBadRequest
	case config.CodeNotFound:
		return http.StatusNotFound
	case config.CodeExists, config.CodeInUse, config.CodeBusy, config.CodeProtected:
		return http.StatusConflict
	case config.CodeUnavailable:
		return http.StatusServiceUnavailable
	case config.CodeTooMany:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(config.ErrorBody{Error: "encode response: " + err.Error(), Code: config.CodeInternal})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), config.ErrorBody{Error: err.Error(), Code: config.ErrorCode(err)})
}

// readBody reads the whole body, refusing an empty, oversized or truncated
// one (shorter than its Content-Length) before any work starts.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("request body larger than %d bytes: %w", maxBody, config.ErrInvalid)
		}
		return nil, fmt.Errorf("read request body: %v: %w", err, config.ErrInvalid)
	}
	if r.ContentLength > 0 && int64(len(b)) != r.ContentLength {
		return nil, fmt.Errorf("request body is %d bytes, Content-Length says %d: %w", len(b), r.ContentLength, config.ErrInvalid)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("request body is empty: %w", config.ErrInvalid)
	}
	return b, nil
}

// decodeBody reads the whole body and decodes it strictly (one JSON value,
// no unknown fields) into v.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	return config.DecodeStrict(bytes.NewReader(body), v)
}

// statusRecorder remembers the status a handler wrote, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// requestID gives every request an ID (the caller's X-Request-ID if sane),
// echoed in the response and the log.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if id == "" || len(id) > 64 {
			id = newRequestID()
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// accessLog logs one line per request and turns a panic into a 500.
func accessLog(log *logrus.Logger) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
			defer func() {
				if p := recover(); p != nil {
					log.WithField("panic", p).Error("handler panicked")
					writeError(rec, fmt.Errorf("internal error"))
				}
				level := logrus.InfoLevel
				if r.Method == http.MethodGet && rec.status < 400 {
					level = logrus.DebugLevel
				}
				// Building the entry costs more than serving a cached GET.
				if !log.IsLevelEnabled(level) {
					return
				}
				log.WithFields(logrus.Fields{
					"method": r.Method, "path": r.URL.Path, "status": rec.status,
					"duration": time.Since(start).String(), "request": r.Context().Value(requestIDKey),
				}).Log(level, "request")
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

func errInvalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, config.ErrInvalid)...)
}
