package config

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors shared by every layer. Check them with errors.Is; the
// volmaster maps them to HTTP status codes and the client maps the codes back,
// so an error keeps its kind across the REST boundary.
var (
	// ErrInvalid marks bad input: a malformed name, size, option or document.
	ErrInvalid = errors.New("invalid input")
	// ErrNotFound marks a missing policy, volume, revision or lock.
	ErrNotFound = errors.New("not found")
	// ErrExists marks a create of something that already exists.
	ErrExists = errors.New("already exists")
	// ErrInUse marks an object that is locked, mounted or busy with another
	// operation.
	ErrInUse = errors.New("in use")
	// ErrUnavailable marks an unreachable dependency (etcd, a storage backend).
	ErrUnavailable = errors.New("unavailable")
	// ErrBusy marks a volume whose operation lock (snapshot, resize, copy,
	// remove) is held: the same request may succeed once it is done. It is
	// a kind of ErrInUse, so checks for ErrInUse still match it; a mount lock
	// held by another host is ErrInUse but never ErrBusy.
	ErrBusy error = &kindError{msg: "busy", parent: ErrInUse}
	// ErrTooMany marks a request over a limit of requests held at once
	// (long polls): the same request may succeed once others are done.
	ErrTooMany = errors.New("too many requests")
	// ErrExpired marks a token past its expiry. A kind of ErrNotFound: an
	// expired token authenticates nothing, like an unknown one.
	ErrExpired error = &kindError{msg: "expired", parent: ErrNotFound}
	// ErrProtected marks the remove of a protected volume (policy or volume
	// option "protect") without the explicit unprotect that volcli volume
	// remove --unprotect sends. A kind of ErrInUse (409).
	ErrProtected error = &kindError{msg: "protected", parent: ErrInUse}
	// ErrSchema marks an etcd key layout this build cannot work with: newer
	// than its own, an unknown schema value, or one it failed to migrate.
	ErrSchema = errors.New("unsupported etcd schema")
)

// Kind returns a sentinel error with its own message that is also a kind
// of parent: errors.Is matches both. storage's sentinels are kinds of these.
func Kind(msg string, parent error) error { return &kindError{msg: msg, parent: parent} }

// kindError is a sentinel that is also a kind of a broader one.
type kindError struct {
	msg    string
	parent error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.parent }

// Error codes carried in the "code" field of volmaster's JSON errors.
const (
	CodeInvalid     = "invalid"
	CodeNotFound    = "not-found"
	CodeExists      = "exists"
	CodeInUse       = "in-use"
	CodeBusy        = "busy"
	CodeTooMany     = "too-many"
	CodeProtected   = "protected"
	CodeUnavailable = "unavailable"
	CodeInternal    = "internal"
)

// ErrorCode returns the wire code for err's kind.
func ErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrInvalid):
		return CodeInvalid
	case errors.Is(err, ErrNotFound):
		return CodeNotFound
	case errors.Is(err, ErrExists):
		return CodeExists
	case errors.Is(err, ErrBusy):
		return CodeBusy
	case errors.Is(err, ErrProtected):
		return CodeProtected
	case errors.Is(err, ErrInUse):
		return CodeInUse
	case errors.Is(err, ErrUnavailable):
		return CodeUnavailable
	case errors.Is(err, ErrTooMany):
		return CodeTooMany
	default:
		return CodeInternal
	}
}

// CodeError returns the sentinel for a wire code, or nil for an unknown or
// internal code.
func CodeError(code string) error {
	switch code {
	case CodeInvalid:
		return ErrInvalid
	case CodeNotFound:
		return ErrNotFound
	case CodeExists:
		return ErrExists
	case CodeInUse:
		return ErrInUse
	case CodeBusy:
		return ErrBusy
	case CodeProtected:
		return ErrProtected
	case CodeUnavailable:
		return ErrUnavailable
	case CodeTooMany:
		return ErrTooMany
	default:
		return nil
	}
}

// EtcdError wraps a failed etcd call as ErrUnavailable, so callers tell it
// from bad input; a call the caller cancelled stays context.Canceled.
func EtcdError(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: etcd: %v: %w", op, err, ErrUnavailable)
}
