package relay

import (
	"errors"

	"github.com/pion/stun/v4"

	"github.com/postern/postern/allocations"
)

// stunError is a request failure with the STUN error code to answer with.
type stunError struct {
	code   stun.ErrorCode
	reason string
	extra  []stun.Setter // attributes the error answer carries, e.g. ALTERNATE-SERVER
}

func (e *stunError) Error() string { return e.reason }

func newError(code stun.ErrorCode, reason string) error {
	return &stunError{code: code, reason: reason}
}

// errorCode is the one place that maps a failure to the STUN error code and
// reason phrase sent to the client (RFC 8656 §19 lists the TURN codes).
func errorCode(err error) (stun.ErrorCode, string) {
	var se *stunError
	switch {
	case errors.As(err, &se):
		return se.code, se.reason
	case errors.Is(err, allocations.ErrQuota):
		return stun.CodeAllocQuotaReached, "Allocation Quota Reached"
	case errors.Is(err, allocations.ErrExists):
		return stun.CodeAllocMismatch, "Allocation Mismatch"
	case errors.Is(err, allocations.ErrNoPorts):
		return stun.CodeInsufficientCapacity, "Insufficient Capacity: no relay port free"
	case errors.Is(err, allocations.ErrChannelConflict):
		return stun.CodeBadRequest, "Bad Request: channel or peer already bound otherwise"
	case errors.Is(err, allocations.ErrCapacity):
		return stun.CodeInsufficientCapacity, "Insufficient Capacity"
	case errors.Is(err, allocations.ErrBadPeer):
		return stun.CodeBadRequest, "Bad Request: invalid peer address"
	case errors.Is(err, allocations.ErrBadChannel):
		return stun.CodeBadRequest, "Bad Request: channel number outside 0x4000-0x4FFF"
	}
	return stun.CodeServerError, "Server Error"
}
