package csi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volplugin/volplugin/config"
)

// statusError is where errors become gRPC status codes, the one place: the
// rest of the package returns the suite's sentinel errors (config.Err*)
// wrapped with what failed, and each service method passes its error
// through here. An error that already carries a status keeps it.
func statusError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var code codes.Code
	switch {
	case errors.Is(err, config.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, config.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, config.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, config.ErrBusy):
		// An operation on the volume is running: the CO retries.
		code = codes.Aborted
	case errors.Is(err, config.ErrInUse):
		// Mounted or locked elsewhere, or protected: the message names the
		// holder.
		code = codes.FailedPrecondition
	case errors.Is(err, config.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, config.ErrTooMany):
		code = codes.ResourceExhausted
	case errors.Is(err, errTopology):
		code = codes.ResourceExhausted
	case errors.Is(err, errOutOfRange):
		code = codes.OutOfRange
	case errors.Is(err, errBadToken):
		// The spec's code for a starting token it cannot use.
		code = codes.Aborted
	case errors.Is(err, errNotStaged):
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	default:
		code = codes.Internal
	}
	return status.Error(code, err.Error())
}

var (
	// errOutOfRange marks a capacity range the volume cannot meet.
	errOutOfRange = errors.New("out of range")
	// errNotStaged marks a publish of a volume not staged at the path given.
	errNotStaged = errors.New("not staged")
	// errBadToken marks a ListVolumes starting token this driver never gave.
	errBadToken = errors.New("bad starting token")
)

// missing is the error for a required request field left empty.
func missing(field string) error {
	return fmt.Errorf("%s is required: %w", field, config.ErrInvalid)
}

// required checks a request's volume ID and one path field before anything
// else: the spec wants InvalidArgument for a missing field even when the ID
// names no volume.
func required(volumeID, path, pathField string) error {
	if volumeID == "" {
		return missing("volume ID")
	}
	if path == "" {
		return missing(pathField)
	}
	return nil
}
